//! The manifest `waymark-bundle.toml`: its types, its rules and its
//! canonical text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::BundleError;
use crate::path::check_component_path;

/// The manifest schema this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Label used in errors when a manifest is parsed on its own.
const STANDALONE: &str = "<manifest>";

/// Longest `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Longest workflow id, effect name or child workflow id, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// A bundle's manifest. Unknown fields anywhere are refused, so a typo such
/// as `fule = 10` is an error instead of a silently ignored limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; only [`SCHEMA_VERSION`] is read.
    pub schema: u32,
    /// The `[bundle]` table: id, version, description.
    pub bundle: BundleInfo,
    /// The `[[workflows]]` entries.
    #[serde(default)]
    pub workflows: Vec<WorkflowEntry>,
    /// Tool components (the `tools` world of `wit/tool.wit`). Absent in
    /// manifests written before tools existed, and left out of the
    /// canonical text when empty, so those manifests keep their digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolEntry>,
    /// Component files by bundle-relative path.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentEntry>,
}

/// Who the bundle is: the operator's policy and the run records refer to
/// bundles by id and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInfo {
    /// 1-64 characters of `[a-z0-9._-]`, starting with `[a-z0-9]`.
    pub id: String,
    /// Non-empty, at most 64 characters of printable ASCII without spaces.
    pub version: String,
    /// Free text for people, at most [`MAX_DESCRIPTION_BYTES`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One workflow the bundle provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowEntry {
    /// The workflow id the component must describe (the host checks this
    /// when it compiles the component).
    pub id: String,
    /// Bundle-relative path of the component, a key of `[components]`.
    pub component: String,
    /// Per-step limits it asks for.
    #[serde(default)]
    pub limits: RequestedLimits,
    /// Rights it asks for.
    #[serde(default)]
    pub capabilities: RequestedCapabilities,
}

/// One tool component the bundle provides. The tools it offers are what
/// the component describes when the host loads it; the manifest only pins
/// the file and the limits its calls ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    /// Bundle-relative path of the component, a key of `[components]`.
    pub component: String,
    /// Per-call limits, requested like a workflow's per-step limits.
    #[serde(default)]
    pub limits: RequestedLimits,
}

/// Per-step limits a workflow asks for. They are requests: the operator's
/// policy caps each of them, and an absent one takes the policy's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    /// Fuel (wasmtime instructions) per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Linear memory per instance, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Wall-clock time per step, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bytes of strings in one returned plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_plan_bytes: Option<u64>,
    /// Bytes of log output per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
    /// Log lines per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_lines: Option<u32>,
}

impl RequestedLimits {
    /// The limits as `(name, value)` pairs in manifest order, absent ones
    /// left out; one place for validation and the canonical writer.
    pub fn entries(&self) -> Vec<(&'static str, u64)> {
        [
            ("fuel", self.fuel),
            ("memory_mb", self.memory_mb.map(u64::from)),
            ("timeout_ms", self.timeout_ms),
            ("max_plan_bytes", self.max_plan_bytes),
            ("max_log_bytes", self.max_log_bytes),
            ("max_log_lines", self.max_log_lines.map(u64::from)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }
}

/// Rights a workflow asks for; the operator's policy decides what it gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedCapabilities {
    /// Built-in or custom effect names, beyond the ones the host always
    /// allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<String>,
    /// Workflow ids this workflow may start as children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub child_workflows: Vec<String>,
    /// Whether it wants the operator's read-only data directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data: bool,
}

impl RequestedCapabilities {
    fn is_empty(&self) -> bool {
        self.effects.is_empty() && self.child_workflows.is_empty() && !self.data
    }
}

/// A component file's identity, checked when the bundle is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    /// 64 lowercase hex digits.
    pub sha256: String,
    /// Length in bytes; checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Only the `schema` key, read before the full parse so that a newer schema
/// is reported as such rather than as a pile of unknown fields.
#[derive(Deserialize)]
struct SchemaProbe {
    schema: Option<toml::Value>,
}

impl Manifest {
    /// Parses and validates manifest text.
    pub fn parse(text: &str) -> Result<Manifest, BundleError> {
        Self::parse_in(text, STANDALONE)
    }

    /// [`Manifest::parse`] with errors naming `bundle`.
    pub(crate) fn parse_in(text: &str, bundle: &str) -> Result<Manifest, BundleError> {
        let syntax = |e: toml::de::Error| BundleError::ManifestSyntax {
            bundle: bundle.to_owned(),
            detail: e.to_string().trim_end().to_owned(),
        };
        let probe: SchemaProbe = toml::from_str(text).map_err(syntax)?;
        match probe.schema {
            None => return Err(invalid(bundle, "schema", "is missing")),
            Some(toml::Value::Integer(n)) if n == i64::from(SCHEMA_VERSION) => {}
            Some(toml::Value::Integer(n)) => {
                return Err(BundleError::UnsupportedSchema {
                    bundle: bundle.to_owned(),
                    found: n,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => return Err(invalid(bundle, "schema", "must be an integer")),
        }
        let manifest: Manifest = toml::from_str(text).map_err(syntax)?;
        manifest.validate_in(bundle)?;
        Ok(manifest)
    }

    /// Checks every rule that the types alone do not express. [`parse`]
    /// calls it; call it yourself on a manifest built in code.
    ///
    /// [`parse`]: Manifest::parse
    pub fn validate(&self) -> Result<(), BundleError> {
        self.validate_in(STANDALONE)
    }

    pub(crate) fn validate_in(&self, bundle: &str) -> Result<(), BundleError> {
        if self.schema != SCHEMA_VERSION {
            return Err(BundleError::UnsupportedSchema {
                bundle: bundle.to_owned(),
                found: i64::from(self.schema),
                supported: SCHEMA_VERSION,
            });
        }
        check_bundle_id(&self.bundle.id).map_err(|r| invalid(bundle, "bundle.id", r))?;
        check_version(&self.bundle.version).map_err(|r| invalid(bundle, "bundle.version", r))?;
        if let Some(d) = &self.bundle.description {
            check_description(d).map_err(|r| invalid(bundle, "bundle.description", r))?;
        }
        if self.workflows.is_empty() && self.tools.is_empty() {
            return Err(BundleError::NoWorkflows {
                bundle: bundle.to_owned(),
            });
        }
        for (path, c) in &self.components {
            check_component_path(path).map_err(|reason| BundleError::UnsafePath {
                bundle: bundle.to_owned(),
                path: path.clone(),
                reason,
            })?;
            if !is_sha256_hex(&c.sha256) {
                return Err(BundleError::InvalidDigest {
                    bundle: bundle.to_owned(),
                    component: path.clone(),
                    digest: c.sha256.clone(),
                });
            }
            if c.size.is_some_and(|s| s > i64::MAX as u64) {
                return Err(invalid(
                    bundle,
                    &format!("components.{path:?}.size"),
                    "is too large",
                ));
            }
        }
        let mut ids = BTreeSet::new();
        let mut used = BTreeSet::new();
        for (i, w) in self.workflows.iter().enumerate() {
            let at = |field: &str| format!("workflows[{i}].{field}");
            check_name(&w.id).map_err(|r| invalid(bundle, &at("id"), r))?;
            if !ids.insert(w.id.as_str()) {
                return Err(BundleError::DuplicateWorkflow {
                    bundle: bundle.to_owned(),
                    id: w.id.clone(),
                });
            }
            check_component_path(&w.component).map_err(|reason| BundleError::UnsafePath {
                bundle: bundle.to_owned(),
                path: w.component.clone(),
                reason,
            })?;
            if !self.components.contains_key(&w.component) {
                return Err(BundleError::UnlistedComponent {
                    bundle: bundle.to_owned(),
                    workflow: w.id.clone(),
                    component: w.component.clone(),
                });
            }
            used.insert(w.component.as_str());
            check_limits(bundle, &at("limits"), &w.limits)?;
            check_names(&w.capabilities.effects)
                .map_err(|r| invalid(bundle, &at("capabilities.effects"), r))?;
            check_names(&w.capabilities.child_workflows)
                .map_err(|r| invalid(bundle, &at("capabilities.child_workflows"), r))?;
        }
        let mut tool_components = BTreeSet::new();
        for (i, t) in self.tools.iter().enumerate() {
            check_component_path(&t.component).map_err(|reason| BundleError::UnsafePath {
                bundle: bundle.to_owned(),
                path: t.component.clone(),
                reason,
            })?;
            if !self.components.contains_key(&t.component) {
                return Err(BundleError::UnlistedToolComponent {
                    bundle: bundle.to_owned(),
                    component: t.component.clone(),
                });
            }
            // The host loads a component as a workflow or as tools, never
            // both (a component exports one world or the other).
            if let Some(w) = self.workflows.iter().find(|w| w.component == t.component) {
                return Err(BundleError::ComponentRoleClash {
                    bundle: bundle.to_owned(),
                    component: t.component.clone(),
                    workflow: w.id.clone(),
                });
            }
            if !tool_components.insert(t.component.as_str()) {
                return Err(BundleError::DuplicateToolComponent {
                    bundle: bundle.to_owned(),
                    component: t.component.clone(),
                });
            }
            used.insert(t.component.as_str());
            check_limits(bundle, &format!("tools[{i}].limits"), &t.limits)?;
        }
        for path in self.components.keys() {
            if !used.contains(path.as_str()) {
                return Err(BundleError::UnusedComponent {
                    bundle: bundle.to_owned(),
                    component: path.clone(),
                });
            }
        }
        Ok(())
    }

    /// The workflow entry with this id.
    pub fn workflow(&self, id: &str) -> Option<&WorkflowEntry> {
        self.workflows.iter().find(|w| w.id == id)
    }

    /// The `[[tools]]` entry of this component path.
    pub fn tool(&self, component: &str) -> Option<&ToolEntry> {
        self.tools.iter().find(|t| t.component == component)
    }

    /// The canonical text of the manifest: fixed key order, absent and
    /// default values left out, one spelling for every string. It is what
    /// `pack` writes and what [`Bundle::digest`](crate::Bundle::digest)
    /// hashes, so it must not change for a given manifest; it is written
    /// here rather than by a TOML library whose formatting may change
    /// between versions. For a valid manifest, `parse(to_toml())` gives the
    /// manifest back.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "schema = {}", self.schema);
        out.push_str("\n[bundle]\n");
        kv_str(&mut out, "id", &self.bundle.id);
        kv_str(&mut out, "version", &self.bundle.version);
        if let Some(d) = &self.bundle.description {
            kv_str(&mut out, "description", d);
        }
        for w in &self.workflows {
            out.push_str("\n[[workflows]]\n");
            kv_str(&mut out, "id", &w.id);
            kv_str(&mut out, "component", &w.component);
            write_limits(&mut out, "workflows", &w.limits);
            let caps = &w.capabilities;
            if !caps.is_empty() {
                out.push_str("\n[workflows.capabilities]\n");
                if !caps.effects.is_empty() {
                    kv_list(&mut out, "effects", &caps.effects);
                }
                if !caps.child_workflows.is_empty() {
                    kv_list(&mut out, "child_workflows", &caps.child_workflows);
                }
                if caps.data {
                    out.push_str("data = true\n");
                }
            }
        }
        for t in &self.tools {
            out.push_str("\n[[tools]]\n");
            kv_str(&mut out, "component", &t.component);
            write_limits(&mut out, "tools", &t.limits);
        }
        for (path, c) in &self.components {
            out.push_str("\n[components.");
            quote(&mut out, path);
            out.push_str("]\n");
            kv_str(&mut out, "sha256", &c.sha256);
            if let Some(size) = c.size {
                let _ = writeln!(out, "size = {size}");
            }
        }
        out
    }
}

fn invalid(bundle: &str, field: &str, reason: impl Into<String>) -> BundleError {
    BundleError::InvalidManifest {
        bundle: bundle.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Requested limits are greater than 0 and fit TOML's signed integers
/// (so the canonical text reparses).
fn check_limits(bundle: &str, at: &str, limits: &RequestedLimits) -> Result<(), BundleError> {
    for (name, value) in limits.entries() {
        if value == 0 {
            return Err(invalid(
                bundle,
                &format!("{at}.{name}"),
                "must be greater than 0",
            ));
        }
        if value > i64::MAX as u64 {
            return Err(invalid(bundle, &format!("{at}.{name}"), "is too large"));
        }
    }
    Ok(())
}

/// `[<table>.limits]` with the limits that are set, if any.
fn write_limits(out: &mut String, table: &str, limits: &RequestedLimits) {
    let limits = limits.entries();
    if limits.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n[{table}.limits]");
    for (k, v) in limits {
        let _ = writeln!(out, "{k} = {v}");
    }
}

fn kv_str(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    quote(out, value);
    out.push('\n');
}

fn kv_list(out: &mut String, key: &str, values: &[String]) {
    out.push_str(key);
    out.push_str(" = [");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        quote(out, v);
    }
    out.push_str("]\n");
}

/// Writes a TOML basic string.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn check_bundle_id(id: &str) -> Result<(), String> {
    let ok_first = id
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if id.is_empty() || id.len() > 64 {
        return Err("must be 1-64 characters".into());
    }
    if !ok_first
        || !id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
    {
        return Err(format!(
            "`{id}` must use only [a-z0-9._-] and start with a lowercase letter or digit"
        ));
    }
    Ok(())
}

fn check_version(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 64 {
        return Err("must be 1-64 characters".into());
    }
    if !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{}` must be printable ASCII without spaces",
            v.escape_debug()
        ));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<(), String> {
    if d.len() > MAX_DESCRIPTION_BYTES {
        return Err(format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"));
    }
    if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("must not contain control characters other than newline and tab".into());
    }
    Ok(())
}

/// Workflow ids, effect names and child workflow ids: 1-128 characters of
/// `[A-Za-z0-9._:-]`, starting with a letter or digit.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("names must be 1-{MAX_NAME_BYTES} characters"));
    }
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok_first
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err(format!(
            "`{}` must use only [A-Za-z0-9._:-] and start with a letter or digit",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn check_names(names: &[String]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for n in names {
        check_name(n)?;
        if !seen.insert(n.as_str()) {
            return Err(format!("lists `{n}` twice"));
        }
    }
    Ok(())
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
