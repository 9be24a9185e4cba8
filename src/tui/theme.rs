//! Themes are data: `themes/*.toml` name semantic roles (`gate_pass`,
//! `step_running`, `muted`, …). A theme may set some roles; the dark theme
//! gives the rest. A colour stella cannot read falls back to the dark
//! theme's for that role, with a warning, instead of failing. `NO_COLOR`
//! keeps bold, underline and reverse video but drops every colour.

use std::collections::BTreeMap;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RoleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    dim: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    roles: BTreeMap<String, RoleSpec>,
}

#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    roles: BTreeMap<String, Style>,
    /// Problems met while loading: shown once in the status line.
    pub warnings: Vec<String>,
}

pub fn color(s: &str) -> Option<Color> {
    if let Some(hex) = s.strip_prefix('#') {
        if hex.len() != 6 {
            return None;
        }
        let n = u32::from_str_radix(hex, 16).ok()?;
        return Some(Color::Rgb((n >> 16) as u8, (n >> 8) as u8, n as u8));
    }
    if let Ok(i) = s.parse::<u8>() {
        return Some(Color::Indexed(i));
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "darkgray" | "darkgrey" => Color::DarkGray,
        "lightred" => Color::LightRed,
        "lightgreen" => Color::LightGreen,
        "lightyellow" => Color::LightYellow,
        "lightblue" => Color::LightBlue,
        "lightmagenta" => Color::LightMagenta,
        "lightcyan" => Color::LightCyan,
        "white" => Color::White,
        "reset" | "default" => Color::Reset,
        _ => return None,
    })
}

fn style(spec: &RoleSpec, role: &str, warnings: &mut Vec<String>) -> Option<Style> {
    let mut s = Style::default();
    for (which, value) in [("fg", &spec.fg), ("bg", &spec.bg)] {
        if let Some(v) = value {
            match color(v) {
                Some(c) if which == "fg" => s = s.fg(c),
                Some(c) => s = s.bg(c),
                None => {
                    warnings.push(format!(
                        "role `{role}`: `{v}` is not a colour; using the default"
                    ));
                    return None;
                }
            }
        }
    }
    let mut m = Modifier::empty();
    for (on, bit) in [
        (spec.bold, Modifier::BOLD),
        (spec.dim, Modifier::DIM),
        (spec.italic, Modifier::ITALIC),
        (spec.underline, Modifier::UNDERLINED),
        (spec.reversed, Modifier::REVERSED),
    ] {
        if on {
            m |= bit;
        }
    }
    Some(s.add_modifier(m))
}

fn roles_of(text: &str, origin: &str, warnings: &mut Vec<String>) -> BTreeMap<String, Style> {
    match toml::from_str::<ThemeFile>(text) {
        Ok(f) => f
            .roles
            .iter()
            .filter_map(|(role, spec)| style(spec, role, warnings).map(|s| (role.clone(), s)))
            .collect(),
        Err(e) => {
            warnings.push(format!("{origin}: {e}; using the dark theme"));
            BTreeMap::new()
        }
    }
}

impl Theme {
    /// A theme from its TOML text, over the dark theme's roles.
    pub fn from_toml(name: &str, text: &str, no_color: bool) -> Theme {
        let mut warnings = Vec::new();
        let mut roles = roles_of(BUILTIN[0].1, "themes/dark.toml", &mut Vec::new());
        roles.extend(roles_of(text, name, &mut warnings));
        if no_color {
            for s in roles.values_mut() {
                *s = Style::default().add_modifier(s.add_modifier);
            }
        }
        Theme {
            name: name.to_owned(),
            roles,
            warnings,
        }
    }

    /// A built-in theme by name, or `None`.
    pub fn builtin(name: &str, no_color: bool) -> Option<Theme> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Theme::from_toml(n, text, no_color))
    }

    pub fn dark() -> Theme {
        Theme::builtin("dark", false).expect("the dark theme is built in")
    }

    /// The style of a role; unknown roles are plain.
    pub fn get(&self, role: &str) -> Style {
        self.roles.get(role).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_theme_parses_without_warnings() {
        for (name, _) in BUILTIN {
            let t = Theme::builtin(name, false).unwrap();
            assert!(t.warnings.is_empty(), "{name}: {:?}", t.warnings);
            assert_ne!(t.get("gate_pass"), Style::default(), "{name}");
        }
    }

    #[test]
    fn a_partial_user_theme_overrides_some_roles_and_a_bad_colour_falls_back() {
        let t = Theme::from_toml(
            "mine",
            "[roles]\ngate_pass = { fg = \"#00ff00\" }\ngate_warn = { fg = \"chartreuse\" }\n",
            false,
        );
        assert_eq!(t.get("gate_pass").fg, Some(Color::Rgb(0, 255, 0)));
        assert_eq!(t.get("gate_warn"), Theme::dark().get("gate_warn"));
        assert_eq!(t.get("title"), Theme::dark().get("title"));
        assert_eq!(t.warnings.len(), 1);
        assert!(t.warnings[0].contains("chartreuse"), "{:?}", t.warnings);
    }

    #[test]
    fn no_color_keeps_modifiers_only() {
        let t = Theme::builtin("dark", true).unwrap();
        let s = t.get("gate_blocked");
        assert_eq!(s.fg, None);
        assert!(s.add_modifier.contains(Modifier::BOLD));
        assert_eq!(t.get("tab_active").bg, None);
    }
}
