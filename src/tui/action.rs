//! What a key (or a `:` command) asks for.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Lanes,
    Promotion,
    Gates,
    Freeze,
    Capsules,
    Releases,
    Rollout,
    Waiting,
}

impl Screen {
    pub const ALL: [Screen; 8] = [
        Screen::Lanes,
        Screen::Promotion,
        Screen::Gates,
        Screen::Freeze,
        Screen::Capsules,
        Screen::Releases,
        Screen::Rollout,
        Screen::Waiting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Screen::Lanes => "lanes",
            Screen::Promotion => "promotion",
            Screen::Gates => "gates",
            Screen::Freeze => "freeze",
            Screen::Capsules => "capsules",
            Screen::Releases => "releases",
            Screen::Rollout => "rollout",
            Screen::Waiting => "waiting",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Screen::Lanes => "Lanes",
            Screen::Promotion => "Promotion",
            Screen::Gates => "Gates",
            Screen::Freeze => "Freeze",
            Screen::Capsules => "Capsules",
            Screen::Releases => "Releases",
            Screen::Rollout => "Rollout",
            Screen::Waiting => "Waiting",
        }
    }

    pub fn parse(s: &str) -> Option<Screen> {
        Screen::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn index(self) -> usize {
        Screen::ALL
            .iter()
            .position(|x| *x == self)
            .expect("every screen is listed")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Help,
    Command,
    Quit,
    Screen(Screen),
    NextScreen,
    PreviousScreen,
    Back,
    Up,
    Down,
    Left,
    Right,
    Open,
    Filter,
    Promote,
    Rollback,
    Unpin,
    Approve,
    Pause,
    Abort,
    NextRun,
    PreviousRun,
    TimeTravel,
    Now,
    NextMonth,
    PreviousMonth,
    Replay,
    Export,
}

/// Every action's name, as keymaps write them (`screen NAME` aside).
pub const NAMES: &[(&str, Action)] = &[
    ("help", Action::Help),
    ("command", Action::Command),
    ("quit", Action::Quit),
    ("next-screen", Action::NextScreen),
    ("previous-screen", Action::PreviousScreen),
    ("back", Action::Back),
    ("up", Action::Up),
    ("down", Action::Down),
    ("left", Action::Left),
    ("right", Action::Right),
    ("open", Action::Open),
    ("filter", Action::Filter),
    ("promote", Action::Promote),
    ("rollback", Action::Rollback),
    ("unpin", Action::Unpin),
    ("approve", Action::Approve),
    ("pause", Action::Pause),
    ("abort", Action::Abort),
    ("next-run", Action::NextRun),
    ("previous-run", Action::PreviousRun),
    ("time-travel", Action::TimeTravel),
    ("now", Action::Now),
    ("next-month", Action::NextMonth),
    ("previous-month", Action::PreviousMonth),
    ("replay", Action::Replay),
    ("export", Action::Export),
];

impl Action {
    pub fn parse(s: &str) -> Result<Action, String> {
        if let Some(name) = s.strip_prefix("screen ") {
            return Screen::parse(name.trim())
                .map(Action::Screen)
                .ok_or_else(|| {
                    format!(
                        "`{s}`: no screen `{name}`; screens: {}",
                        Screen::ALL.map(Screen::name).join(", ")
                    )
                });
        }
        NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| format!("`{s}` is not an action stella knows"))
    }
}
