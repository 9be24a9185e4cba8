//! The statement an approver signs. It binds the approval to one app, one
//! digest and one environment (and the open promotion, if any), so it
//! cannot be replayed onto anything else.

use serde::{Deserialize, Serialize};

use super::Digest;

/// The DSSE payload type of an approval.
pub const APPROVAL_PAYLOAD_TYPE: &str = "application/vnd.stella.approval.v1+json";
/// The media type approvals are stored under as evidence.
pub const APPROVAL_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The statement's `_type`.
pub const APPROVAL_TYPE: &str = "https://stella-ops.org/approval/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Counts toward the approval gate.
    Promote,
    /// Counts toward breaking a freeze, and only that.
    BreakGlass,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStatement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub app: String,
    pub digest: Digest,
    pub environment: String,
    pub promotion_id: Option<i64>,
    pub signer: String,
    /// RFC 3339, UTC.
    pub signed_at: String,
    pub purpose: Purpose,
    pub comment: Option<String>,
}
