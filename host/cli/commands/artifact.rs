//! `waymark artifact`: content-addressed blobs.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use waymark_core::ArtifactMeta;

use crate::global::GlobalArgs;

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// Store a file's bytes; prints the artifact id (their sha256).
    Put {
        file: PathBuf,
        /// Default: guessed from the extension (.json, .txt), else
        /// application/octet-stream.
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
    },
    /// Write an artifact's bytes (checked against its id) to stdout, or to
    /// a file with -o (then a summary is printed, as JSON with --json).
    Get {
        artifact_id: String,
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List the stored artifacts.
    List,
}

impl ArtifactCommand {
    pub fn execute(&self, g: &GlobalArgs) -> Result<i32> {
        let host = g.open_host(false)?;
        let rt = &host.runtime;
        let json = g.json;
        let store = rt.store();
        match self {
            ArtifactCommand::Put { file, content_type } => {
                let bytes = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let content_type = content_type
                    .clone()
                    .unwrap_or_else(|| guess_content_type(file).to_owned());
                let meta = store.put_artifact(&bytes, &content_type)?;
                if json {
                    println!("{}", serde_json::to_string(&meta)?);
                } else {
                    println!("{}", meta.artifact_id);
                }
            }
            ArtifactCommand::Get { artifact_id, out } => {
                let (meta, bytes) = store.get_artifact(artifact_id)?;
                match out {
                    None => {
                        let mut stdout = std::io::stdout().lock();
                        stdout.write_all(&bytes)?;
                        stdout.flush()?;
                    }
                    Some(path) => {
                        std::fs::write(path, &bytes)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        if json {
                            println!("{}", json!({ "meta": meta, "path": path }));
                        } else {
                            println!("wrote {} bytes to {}", bytes.len(), path.display());
                        }
                    }
                }
            }
            ArtifactCommand::List => {
                let all = store.list_artifacts()?;
                if json {
                    println!("{}", serde_json::to_string(&all)?);
                } else {
                    for m in &all {
                        println!("{}", artifact_line(m));
                    }
                }
            }
        }
        Ok(0)
    }
}

fn guess_content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

fn artifact_line(m: &ArtifactMeta) -> String {
    format!(
        "{}  {:>10} bytes  {}",
        m.artifact_id, m.size, m.content_type
    )
}
