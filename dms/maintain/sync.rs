//! The `sync` task (`dms sync [--node N]`, `POST /api/v1/jobs {"task":"sync"}`): ships every
//! settled change up to now to the backup nodes (or one) through
//! [`crate::replicate::Replicator::sync`], waiting for each node to confirm; on a replica it
//! also pulls from the primary. A node that fails is an error line of the job; the others are
//! shipped regardless.

use serde::Serialize;

use super::MaintainEnv;
use super::ctx::JobCtx;
use super::task::SyncParams;
use crate::replicate::{NodeSync, Progress};

/// What a sync job reports as its counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncCounters {
    /// Nodes shipped to.
    pub nodes: u64,
    pub nodes_failed: u64,
    /// Changes shipped, over every node.
    pub changes: u64,
    pub bars_written: u64,
    pub bars_deleted: u64,
    pub actions_written: u64,
    /// On a replica: changes pulled from its primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulled: Option<u64>,
    /// Per node.
    pub per_node: Vec<NodeSync>,
}

pub async fn run(
    env: &MaintainEnv,
    p: &SyncParams,
    ctx: &JobCtx,
) -> (serde_json::Value, Vec<String>) {
    let progress = |pr: Progress| {
        ctx.set_total(pr.total);
        ctx.set_done(pr.done);
    };
    let report = match env
        .replicator
        .sync(p.node.as_deref(), &progress, &ctx.cancel)
        .await
    {
        Ok(r) => r,
        Err(e) => return (serde_json::Value::Null, vec![format!("sync: {e}")]),
    };
    let mut c = SyncCounters {
        nodes: report.nodes.len() as u64,
        pulled: report.pulled,
        ..SyncCounters::default()
    };
    let mut errors = Vec::new();
    for n in &report.nodes {
        c.changes += n.changes;
        c.bars_written += n.bars_written;
        c.bars_deleted += n.bars_deleted;
        c.actions_written += n.actions_written;
        let line = if n.ok {
            format!(
                "node {}: {} changes shipped ({} bars written, {} deleted), acked to {} of {}",
                n.node, n.changes, n.bars_written, n.bars_deleted, n.acked_seq, n.target_seq
            )
        } else {
            c.nodes_failed += 1;
            let e = format!(
                "node {}: {}",
                n.node,
                n.error.as_deref().unwrap_or("failed")
            );
            errors.push(e.clone());
            e
        };
        ctx.log(if n.ok { "info" } else { "error" }, &line).await;
    }
    if let Some(e) = &report.pull_error {
        let line = format!("pull from the primary: {e}");
        ctx.log("error", &line).await;
        errors.push(line);
    }
    c.per_node = report.nodes;
    (serde_json::to_value(&c).unwrap_or_default(), errors)
}
