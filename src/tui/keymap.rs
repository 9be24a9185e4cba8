//! Keys are data: `assets/keymap.toml` is embedded, a user's keymap is
//! merged over it, and each binding's `desc` feeds the help layer.

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

use super::action::Action;

pub const DEFAULT: &str = include_str!("../../assets/keymap.toml");

/// Where bindings apply: everywhere, or on one screen.
pub const SECTIONS: &[&str] = &[
    "global",
    "lanes",
    "promotion",
    "gates",
    "freeze",
    "capsules",
    "releases",
    "rollout",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Binding {
    on: String,
    run: String,
    desc: String,
}

/// One key, as the keymap writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

impl Key {
    pub fn parse(s: &str) -> Result<Key, String> {
        let named = |n: &str| -> Option<KeyCode> {
            Some(match n {
                "Enter" => KeyCode::Enter,
                "Esc" => KeyCode::Esc,
                "Tab" => KeyCode::Tab,
                "BackTab" => KeyCode::BackTab,
                "Up" => KeyCode::Up,
                "Down" => KeyCode::Down,
                "Left" => KeyCode::Left,
                "Right" => KeyCode::Right,
                "PageUp" => KeyCode::PageUp,
                "PageDown" => KeyCode::PageDown,
                "Home" => KeyCode::Home,
                "End" => KeyCode::End,
                "Space" => KeyCode::Char(' '),
                "Backspace" => KeyCode::Backspace,
                _ => return None,
            })
        };
        if let Some(inner) = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
            if let Some(rest) = inner.strip_prefix("C-") {
                let mut chars = rest.chars();
                return match (chars.next(), chars.next()) {
                    (Some(c), None) => Ok(Key {
                        code: KeyCode::Char(c.to_ascii_lowercase()),
                        ctrl: true,
                    }),
                    _ => Err(format!("`{s}`: write a control key like <C-c>")),
                };
            }
            return named(inner)
                .map(|code| Key { code, ctrl: false })
                .ok_or_else(|| format!("`{s}` is not a key stella knows"));
        }
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(Key {
                code: KeyCode::Char(c),
                ctrl: false,
            }),
            _ => Err(format!(
                "`{s}` is not one key; write a character or a name like <Enter>"
            )),
        }
    }

    pub fn of(ev: &KeyEvent) -> Key {
        Key {
            code: ev.code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
        }
    }

    /// How the help layer shows it.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "enter".into(),
            KeyCode::Esc => "esc".into(),
            KeyCode::Tab => "tab".into(),
            KeyCode::BackTab => "shift-tab".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "pgup".into(),
            KeyCode::PageDown => "pgdn".into(),
            KeyCode::Home => "home".into(),
            KeyCode::End => "end".into(),
            KeyCode::Backspace => "backspace".into(),
            other => format!("{other:?}"),
        };
        if self.ctrl {
            format!("ctrl-{base}")
        } else {
            base
        }
    }
}

/// A resolved binding, for lookup and for help.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub key: Key,
    pub action: Action,
    pub desc: String,
}

#[derive(Debug, Clone, Default)]
pub struct Keymap {
    /// Section → bindings, in file order.
    sections: BTreeMap<String, Vec<Bound>>,
}

fn parse(text: &str, origin: &str) -> Result<BTreeMap<String, Vec<Bound>>, String> {
    let raw: BTreeMap<String, Vec<Binding>> =
        toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    let mut out = BTreeMap::new();
    for (section, bindings) in raw {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(format!(
                "{origin}: `[[{section}]]` is not a keymap section; sections: {}",
                SECTIONS.join(", ")
            ));
        }
        let mut list = Vec::new();
        for b in bindings {
            let key = Key::parse(&b.on).map_err(|e| format!("{origin}: [[{section}]] {e}"))?;
            let action =
                Action::parse(&b.run).map_err(|e| format!("{origin}: [[{section}]] {e}"))?;
            list.push(Bound {
                key,
                action,
                desc: b.desc,
            });
        }
        out.insert(section, list);
    }
    Ok(out)
}

impl Keymap {
    /// The embedded default.
    pub fn default_keys() -> Keymap {
        Keymap {
            sections: parse(DEFAULT, "the default keymap").expect("the default keymap parses"),
        }
    }

    /// The default with `user` (a keymap file's text) merged over it: a
    /// binding for a key already bound in that section replaces it.
    pub fn with_user(user: &str, origin: &str) -> Result<Keymap, String> {
        let mut map = Keymap::default_keys();
        for (section, bindings) in parse(user, origin)? {
            let list = map.sections.entry(section).or_default();
            for b in bindings {
                match list.iter_mut().find(|x| x.key == b.key) {
                    Some(x) => *x = b,
                    None => list.push(b),
                }
            }
        }
        Ok(map)
    }

    /// What `key` does on `screen`: the screen's binding first, then global.
    pub fn lookup(&self, screen: &str, key: Key) -> Option<&Action> {
        [screen, "global"]
            .iter()
            .filter_map(|s| self.sections.get(*s))
            .flat_map(|l| l.iter())
            .find(|b| b.key == key)
            .map(|b| &b.action)
    }

    /// Bindings of a section, for the help layer.
    pub fn section(&self, name: &str) -> &[Bound] {
        self.sections.get(name).map_or(&[], Vec::as_slice)
    }

    /// The first key bound to `action` on `screen` (for hints).
    pub fn key_for(&self, screen: &str, action: &Action) -> Option<Key> {
        [screen, "global"]
            .iter()
            .filter_map(|s| self.sections.get(*s))
            .flat_map(|l| l.iter())
            .find(|b| &b.action == action)
            .map(|b| b.key)
    }
}

/// The keymap as a Markdown table per section, for `docs/tui.md`.
pub fn markdown(map: &Keymap) -> String {
    let mut out = String::new();
    for section in SECTIONS {
        let bindings = map.section(section);
        if bindings.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "### {}\n\n| key | does |\n|---|---|\n",
            if *section == "global" {
                "Everywhere".to_owned()
            } else {
                format!("On {section}")
            }
        ));
        for b in bindings {
            out.push_str(&format!(
                "| `{}` | {} |\n",
                b.key.label().replace('|', "\\|"),
                b.desc
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::action::Screen;

    #[test]
    fn keys_parse_and_label() {
        assert_eq!(Key::parse("q").unwrap().code, KeyCode::Char('q'));
        let c = Key::parse("<C-c>").unwrap();
        assert!(c.ctrl);
        assert_eq!(c.label(), "ctrl-c");
        assert_eq!(Key::parse("<Space>").unwrap().label(), "space");
        assert!(Key::parse("<Hyper>").unwrap_err().contains("not a key"));
        assert!(Key::parse("ab").unwrap_err().contains("not one key"));
    }

    #[test]
    fn screen_bindings_win_over_global_ones() {
        let k = Keymap::default_keys();
        let n = Key::parse("n").unwrap();
        assert_eq!(k.lookup("freeze", n), Some(&Action::NextMonth));
        assert_eq!(k.lookup("gates", n), Some(&Action::Now));
        assert_eq!(k.lookup("lanes", n), None);
        assert_eq!(
            k.lookup("lanes", Key::parse("2").unwrap()),
            Some(&Action::Screen(Screen::Promotion))
        );
    }

    #[test]
    fn a_user_keymap_replaces_and_adds_and_bad_ones_are_named() {
        let k = Keymap::with_user(
            "[[global]]\non = \"q\"\nrun = \"help\"\ndesc = \"mine\"\n\n[[lanes]]\non = \"P\"\nrun = \"promote\"\ndesc = \"promote too\"\n",
            "keymap.toml",
        )
        .unwrap();
        assert_eq!(
            k.lookup("lanes", Key::parse("q").unwrap()),
            Some(&Action::Help)
        );
        assert_eq!(
            k.lookup("lanes", Key::parse("P").unwrap()),
            Some(&Action::Promote)
        );
        assert_eq!(
            k.lookup("lanes", Key::parse("p").unwrap()),
            Some(&Action::Promote)
        );
        let e = Keymap::with_user(
            "[[lanes]]\non = \"p\"\nrun = \"launch\"\ndesc = \"x\"\n",
            "keymap.toml",
        )
        .unwrap_err();
        assert!(
            e.contains("keymap.toml: [[lanes]]") && e.contains("launch"),
            "{e}"
        );
        let e = Keymap::with_user(
            "[[nowhere]]\non = \"p\"\nrun = \"help\"\ndesc = \"x\"\n",
            "k",
        )
        .unwrap_err();
        assert!(e.contains("not a keymap section"), "{e}");
    }
}
