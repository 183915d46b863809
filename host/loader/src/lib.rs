//! Turns bundles into registered workflows under an operator [`Policy`]:
//! each workflow gets the intersection of what its bundle asks for and what
//! the policy allows, compiled through the verified compile cache. A
//! bundle's tool components are loaded the same way and their tools given
//! the approval the policy's `[tools]` section says ([`register_tools`]
//! puts them in a host's `ToolRegistry`).

#![warn(missing_docs)]

pub mod load;
pub mod policy;

pub use load::{
    LoadError, LoadedBundle, LoadedTools, LoadedWorkflow, Loader, ToolOrigin, register_tools,
    request_of,
};
pub use policy::{
    BundleOverride, ChildPolicy, DefaultApproval, Effective, FlowPolicy, GrantPolicy, LimitPolicy,
    Policy, PolicyError, Request, RetentionPolicy, ToolPolicy,
};
