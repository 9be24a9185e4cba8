//! The workbench's view: drawing its busiest screens, and folding a flood
//! of engine events into its state. Figures in docs/benchmarks.md.
//!
//!     cargo bench --bench tui

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use stella::engine::{EngineEvent, EventKind};
use stella::tui::action::Screen;
use stella::tui::state::{App, Msg};
use stella::tui::{keymap::Keymap, reduce, sample, theme::Theme, views};
use stella::workflow::executor::StepState;

fn app(apps: usize, steps: usize) -> App {
    App::new(
        sample::snapshot(apps, steps),
        sample::now(),
        chrono::FixedOffset::east_opt(0).unwrap(),
        Keymap::default_keys(),
        Theme::dark(),
    )
}

/// 10,000 events of a 200-step run: starts, log lines and finishes.
fn flood(n: usize) -> Vec<Msg> {
    let graph = sample::graph(200);
    let mut out = vec![Msg::Engine(EngineEvent {
        ticket: 1,
        kind: EventKind::PromotionCreated {
            promotion_id: 5000,
            app: "web".into(),
            digest: sample::digest(1),
            environment: "staging".into(),
            targets: vec![],
            steps: graph.clone(),
            // As the engine sends it: computed by the template's
            // validation, never by the view.
            critical_path: graph.iter().take(5).map(|(s, _)| s.clone()).collect(),
        },
    })];
    for i in 0..n {
        let step = graph[(i / 3) % graph.len()].0.clone();
        let kind = match i % 3 {
            0 => EventKind::StepStarted {
                promotion_id: 5000,
                step,
                attempt: 1,
            },
            1 => EventKind::StepLog {
                promotion_id: 5000,
                step,
                line: format!("line {i}"),
            },
            _ => EventKind::StepFinished {
                promotion_id: 5000,
                step,
                state: StepState::Succeeded,
                attempts: 1,
                duration: Duration::from_millis(i as u64),
                error: None,
            },
        };
        out.push(Msg::Engine(EngineEvent { ticket: 1, kind }));
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tui");
    // Lanes: 3 environments × 20 apps, on a terminal tall enough to show them.
    let lanes = app(20, 200);
    let mut term = Terminal::new(TestBackend::new(200, 90)).unwrap();
    g.bench_function("render lanes: 3 envs × 20 apps (200×90)", |b| {
        b.iter(|| {
            term.draw(|f| views::render(f, &lanes)).unwrap();
        })
    });
    let mut dag = app(20, 200);
    dag.screen = Screen::Promotion;
    dag.run = Some(1000);
    g.bench_function("render promotion: a 200-step DAG (200×90)", |b| {
        b.iter(|| {
            term.draw(|f| views::render(f, &dag)).unwrap();
        })
    });
    let events = flood(10_000);
    g.bench_function("reduce 10,000 engine events", |b| {
        b.iter_batched(
            || (app(20, 200), events.clone()),
            |(mut a, evs)| {
                for e in evs {
                    reduce::reduce(&mut a, e);
                }
                a
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();

    // As the loop runs it: 10,000 events arriving within one second, drained
    // and drawn at most every 16 ms. The longest frame (reduce + draw) is
    // what a person would feel.
    let mut a = app(20, 200);
    a.screen = Screen::Promotion;
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let per_frame = 10_000 / 60 + 1;
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    for chunk in events.chunks(per_frame) {
        let t = Instant::now();
        for e in chunk.iter().cloned() {
            reduce::reduce(&mut a, e);
        }
        term.draw(|f| views::render(f, &a)).unwrap();
        worst = worst.max(t.elapsed());
    }
    println!(
        "10,000 events in frames of {per_frame}: worst frame {:.2} ms, all in {:.1} ms",
        worst.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
