//! The TOML shape of a workflow template.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Other templates whose steps come first (paths relative to this file).
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepTemplate>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    pub id: Spanned<String>,
    pub uses: Option<Spanned<String>>,
    pub run: Option<Spanned<String>>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    #[serde(default)]
    pub with: BTreeMap<String, Spanned<toml::Value>>,
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: u32,
    #[serde(rename = "if")]
    pub condition: Option<Spanned<String>>,
    #[serde(default)]
    pub continue_on_error: bool,
    /// Environment variables for `run` steps.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}
