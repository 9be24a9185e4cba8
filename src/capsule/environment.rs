//! The effective environment config a decision used — its gates and the
//! freeze windows they name — stored as a TOML evidence blob so replay reads
//! the config exactly as it was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::model::{FreezeWindowConfig, GatesConfig};

pub const MEDIA_TYPE: &str = "application/vnd.stella.environment.v1+toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectiveEnvironment {
    pub name: String,
    pub from: Option<String>,
    #[serde(default)]
    pub gates: GatesConfig,
    #[serde(default)]
    pub freeze: BTreeMap<String, FreezeWindowConfig>,
}

impl EffectiveEnvironment {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("environment config always serializes")
    }

    pub fn from_toml(text: &str) -> Result<EffectiveEnvironment, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
