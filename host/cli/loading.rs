//! Loading bundles and components into a command's host, with a warning
//! for the rights a bundle asked for and the policy refused.

use std::path::Path;

use anyhow::Result;
use waymark_host::Host;
use waymark_loader::LoadedWorkflow;

/// Loads a bundle or a bare component into the catalog and registers its
/// workflows (see [`Host::load`]); warns on stderr (unless `json`) about
/// rights the policy refused.
pub fn load_path(host: &Host, path: &Path, json: bool) -> Result<Vec<LoadedWorkflow>> {
    let loaded = host.load(path)?;
    for wf in &loaded {
        if !wf.effective.refused.is_empty() && !json {
            eprintln!(
                "warning: workflow '{}' asked for rights the policy refuses: {}",
                wf.workflow.info().workflow_id,
                wf.effective.refused.join(", ")
            );
        }
    }
    Ok(loaded)
}
