//! Themes are data: `themes/*.toml` name semantic roles (`gate_pass`,
//! `step_running`, `muted`, …: the [`Role`]s). A theme may set some roles;
//! the dark theme gives the rest. A role stella does not know is an error
//! naming it and the known ones (a typo never silently gives the default
//! style). A colour stella cannot read falls back to the dark theme's for
//! that role, with a warning, instead of failing. `NO_COLOR` keeps bold,
//! underline and reverse video but drops every colour.

use std::collections::BTreeMap;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

use crate::domain::PromotionOutcome;

/// What a piece of the screen means; a theme gives each a style.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Display,
    EnumString,
    IntoStaticStr,
    VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    Badge,
    Border,
    BorderFocus,
    CriticalPath,
    Digest,
    Frozen,
    FrozenPartial,
    GateBlocked,
    GatePass,
    GateSkipped,
    GateWarn,
    Muted,
    Selected,
    StatusError,
    StatusInfo,
    StepDone,
    StepFailed,
    StepPending,
    StepRunning,
    StepSkipped,
    Tab,
    TabActive,
    Text,
    Title,
    Today,
}

impl Role {
    /// The name a theme file gives it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The role an outcome is drawn in, on every screen: what succeeded as
/// done, what was refused or stopped as blocked, what failed (a rollback
/// included: the release asked for does not serve) as failed, what is
/// held as a warning.
pub fn outcome_role(o: PromotionOutcome) -> Role {
    use PromotionOutcome as O;
    match o {
        O::Live | O::Deployed | O::Unpinned | O::FlagsSet => Role::StepDone,
        O::Blocked | O::Aborted => Role::GateBlocked,
        O::DeployFailed | O::RollbackFailed | O::Interrupted => Role::StepFailed,
        // The earlier release serves again: wanted (a rollback) or not (a
        // canary's analysis), never quite done and never broken.
        O::Paused | O::RolledBack => Role::GateWarn,
    }
}

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
    roles: BTreeMap<Role, Style>,
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

fn roles_of(
    text: &str,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<Role, Style>, String> {
    let f = match toml::from_str::<ThemeFile>(text) {
        Ok(f) => f,
        Err(e) => {
            warnings.push(format!("{origin}: {e}; using the dark theme"));
            return Ok(BTreeMap::new());
        }
    };
    let mut roles = BTreeMap::new();
    for (name, spec) in &f.roles {
        let Ok(role) = name.parse::<Role>() else {
            return Err(format!(
                "{origin}: `{name}` is not a theme role; the roles are {}",
                Role::VARIANTS
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if let Some(s) = style(spec, name, warnings) {
            roles.insert(role, s);
        }
    }
    Ok(roles)
}

impl Theme {
    /// A theme from its TOML text, over the dark theme's roles; a role
    /// it does not know is an error naming it.
    pub fn from_toml(name: &str, text: &str, no_color: bool) -> Result<Theme, String> {
        let mut warnings = Vec::new();
        let mut roles = roles_of(BUILTIN[0].1, "themes/dark.toml", &mut Vec::new())?;
        roles.extend(roles_of(text, name, &mut warnings)?);
        if no_color {
            for s in roles.values_mut() {
                *s = Style::default().add_modifier(s.add_modifier);
            }
        }
        Ok(Theme {
            name: name.to_owned(),
            roles,
            warnings,
        })
    }

    /// A built-in theme by name, or `None`.
    pub fn builtin(name: &str, no_color: bool) -> Option<Theme> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, text)| {
            Theme::from_toml(n, text, no_color).expect("built-in themes name known roles")
        })
    }

    pub fn dark() -> Theme {
        Theme::builtin("dark", false).expect("the dark theme is built in")
    }

    /// The style of a role (plain if neither this theme nor the dark one
    /// sets it).
    pub fn get(&self, role: Role) -> Style {
        self.roles.get(&role).copied().unwrap_or_default()
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
            assert_ne!(t.get(Role::GatePass), Style::default(), "{name}");
        }
    }

    #[test]
    fn a_partial_user_theme_overrides_some_roles_and_a_bad_colour_falls_back() {
        let t = Theme::from_toml(
            "mine",
            "[roles]\ngate_pass = { fg = \"#00ff00\" }\ngate_warn = { fg = \"chartreuse\" }\n",
            false,
        )
        .unwrap();
        assert_eq!(t.get(Role::GatePass).fg, Some(Color::Rgb(0, 255, 0)));
        assert_eq!(t.get(Role::GateWarn), Theme::dark().get(Role::GateWarn));
        assert_eq!(t.get(Role::Title), Theme::dark().get(Role::Title));
        assert_eq!(t.warnings.len(), 1);
        assert!(t.warnings[0].contains("chartreuse"), "{:?}", t.warnings);
    }

    #[test]
    fn a_theme_naming_an_unknown_role_is_an_error_naming_it() {
        let err = Theme::from_toml("mine", "[roles]\ngate_pas = { fg = \"green\" }\n", false)
            .unwrap_err();
        assert!(err.contains("`gate_pas` is not a theme role"), "{err}");
        assert!(err.contains("gate_pass"), "{err}");
    }

    #[test]
    fn every_outcome_has_the_role_of_what_happened() {
        use PromotionOutcome as O;
        assert_eq!(outcome_role(O::RollbackFailed), Role::StepFailed);
        assert_eq!(outcome_role(O::DeployFailed), Role::StepFailed);
        assert_eq!(outcome_role(O::Unpinned), Role::StepDone);
        assert_eq!(outcome_role(O::FlagsSet), Role::StepDone);
        assert_eq!(outcome_role(O::RolledBack), Role::GateWarn);
        for o in O::VARIANTS {
            let role = outcome_role(*o);
            if o.failed() {
                assert_eq!(role, Role::StepFailed, "{o}");
            }
            if o.succeeded() && *o != O::Paused {
                assert_eq!(role, Role::StepDone, "{o}");
            }
        }
    }

    #[test]
    fn every_role_of_the_builtin_themes_is_known() {
        for (name, text) in BUILTIN {
            let f: ThemeFile = toml::from_str(text).unwrap();
            for role in f.roles.keys() {
                assert!(role.parse::<Role>().is_ok(), "{name}: {role}");
            }
        }
    }

    #[test]
    fn no_color_keeps_modifiers_only() {
        let t = Theme::builtin("dark", true).unwrap();
        let s = t.get(Role::GateBlocked);
        assert_eq!(s.fg, None);
        assert!(s.add_modifier.contains(Modifier::BOLD));
        assert_eq!(t.get(Role::TabActive).bg, None);
    }
}
