//! Turns bundles into registered workflows under an operator [`Policy`]:
//! each workflow gets the intersection of what its bundle asks for and what
//! the policy allows, compiled through the verified compile cache.

pub mod load;
pub mod policy;

pub use load::{LoadError, LoadedBundle, LoadedWorkflow, Loader, request_of};
pub use policy::{
    BundleOverride, ChildPolicy, Effective, GrantPolicy, LimitPolicy, Policy, PolicyError, Request,
};
