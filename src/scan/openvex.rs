//! OpenVEX v0.2.0 (and the older v0.0.x shapes, where a vulnerability is a
//! string and subcomponents sit on the statement).

use serde::Deserialize;

use super::{Report, VexStatement, VexStatus};

pub enum Error {
    Json(serde_json::Error),
    Status(String),
}

#[derive(Deserialize)]
struct Doc {
    statements: Vec<Statement>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Vulnerability {
    Name(String),
    Object {
        #[serde(default)]
        name: Option<String>,
        #[serde(rename = "@id", default)]
        id: Option<String>,
        #[serde(default)]
        aliases: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Product {
    Id(String),
    Object {
        #[serde(rename = "@id", default)]
        id: Option<String>,
        #[serde(default)]
        identifiers: Option<Identifiers>,
        #[serde(default)]
        subcomponents: Vec<Product>,
    },
}

#[derive(Deserialize)]
struct Identifiers {
    #[serde(default)]
    purl: Option<String>,
}

impl Product {
    fn ids(&self) -> Vec<String> {
        match self {
            Product::Id(s) => vec![s.clone()],
            Product::Object {
                id, identifiers, ..
            } => id
                .iter()
                .cloned()
                .chain(identifiers.as_ref().and_then(|i| i.purl.clone()))
                .collect(),
        }
    }
}

#[derive(Deserialize)]
struct Statement {
    vulnerability: Vulnerability,
    #[serde(default)]
    products: Vec<Product>,
    #[serde(default)]
    subcomponents: Vec<Product>,
    status: String,
    #[serde(default)]
    justification: Option<String>,
}

pub fn parse(bytes: &[u8]) -> Result<Report, Error> {
    let doc: Doc = serde_json::from_slice(bytes).map_err(Error::Json)?;
    let mut statements = Vec::new();
    for (i, s) in doc.statements.into_iter().enumerate() {
        let status = match s.status.as_str() {
            "not_affected" => VexStatus::NotAffected,
            "affected" => VexStatus::Affected,
            "fixed" => VexStatus::Fixed,
            "under_investigation" => VexStatus::UnderInvestigation,
            other => return Err(Error::Status(other.to_owned())),
        };
        let (vulnerability, aliases) = match s.vulnerability {
            Vulnerability::Name(n) => (n, Vec::new()),
            Vulnerability::Object { name, id, aliases } => {
                let n = name.or(id).unwrap_or_default();
                (n, aliases)
            }
        };
        let mut products = Vec::new();
        let mut subcomponents: Vec<String> =
            s.subcomponents.iter().flat_map(Product::ids).collect();
        for p in &s.products {
            products.extend(p.ids());
            if let Product::Object {
                subcomponents: subs,
                ..
            } = p
            {
                subcomponents.extend(subs.iter().flat_map(Product::ids));
            }
        }
        statements.push(VexStatement {
            vulnerability,
            aliases,
            products,
            subcomponents,
            linked: Vec::new(),
            status,
            justification: s.justification,
            locator: format!("statements[{i}]"),
        });
    }
    Ok(Report {
        statements,
        ..Report::default()
    })
}
