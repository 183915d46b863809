//! Pool accounting: what the instance pool holds and what one instance takes.

use wasmtime::component::Component;

use crate::engine::EngineConfig;

/// Most linear memories one component may define; the per-step memory cap
/// applies to each of them.
pub(crate) const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
/// Most core instances one component may create. A Python component
/// (componentize-py) creates about 40: the interpreter, libc, adapters and
/// the shims between them.
pub(crate) const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// What the instance pool holds in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolTotals {
    pub(crate) components: u32,
    pub(crate) core_instances: u32,
    pub(crate) memories: u32,
    pub(crate) tables: u32,
}

impl PoolTotals {
    /// Sized so `pool_instances` small components (a Rust guest: two core
    /// instances, one memory, one table) run at once, and components with
    /// many core instances (an interpreter: about 40) run an eighth as many
    /// at once: each takes a share of the pool in proportion to what it
    /// uses (see [`PoolNeed`]). Core instance slots cost address space, not
    /// memory, until used.
    pub(crate) fn of(config: &EngineConfig) -> Self {
        let n = config.pool_instances.max(1);
        Self {
            components: n,
            core_instances: n.saturating_mul(8).max(MAX_CORE_INSTANCES_PER_COMPONENT),
            memories: n.saturating_mul(2).max(MAX_MEMORIES_PER_COMPONENT),
            tables: n.saturating_mul(4).max(MAX_CORE_INSTANCES_PER_COMPONENT),
        }
    }
}

/// What one instance of a component takes from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolNeed {
    core_instances: u32,
    memories: u32,
    tables: u32,
}

impl PoolNeed {
    /// Counted from the component: its core instantiations (from the
    /// binary: wasmtime does not expose the count), and the memories and
    /// tables its core modules define (from wasmtime). A count that cannot
    /// be made falls back to the per-component maximum, which is safe.
    pub(crate) fn of(bytes: &[u8], component: &Component) -> Self {
        let resources = component.resources_required();
        Self {
            core_instances: count_core_instantiations(bytes)
                .unwrap_or(MAX_CORE_INSTANCES_PER_COMPONENT)
                .max(1),
            memories: resources
                .as_ref()
                .map_or(MAX_MEMORIES_PER_COMPONENT, |r| r.num_memories),
            tables: resources
                .as_ref()
                .map_or(MAX_CORE_INSTANCES_PER_COMPONENT, |r| r.num_tables),
        }
    }

    pub(crate) fn fits_in(&self, free: &PoolTotals) -> bool {
        free.components >= 1
            && free.core_instances >= self.core_instances
            && free.memories >= self.memories
            && free.tables >= self.tables
    }
}

/// Core module instantiations in a component binary, nested components
/// included; `None` when the binary cannot be read.
fn count_core_instantiations(bytes: &[u8]) -> Option<u32> {
    let mut count = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::InstanceSection(section) = payload.ok()? {
            for instance in section {
                if matches!(instance.ok()?, wasmparser::Instance::Instantiate { .. }) {
                    count = count.saturating_add(1);
                }
            }
        }
    }
    Some(count)
}

/// A semaphore over the instance pool: a call waits until the pool has room
/// for its instance (one component instance, plus the core instances,
/// memories and tables it needs) rather than failing when concurrent calls
/// hold the rest.
pub(crate) struct Slots {
    /// What the pool holds in all.
    pub(crate) total: PoolTotals,
    free: std::sync::Mutex<PoolTotals>,
    freed: std::sync::Condvar,
}

pub(crate) struct SlotGuard<'a> {
    slots: &'a Slots,
    need: PoolNeed,
}

impl Slots {
    pub(crate) fn new(totals: PoolTotals) -> Self {
        Self {
            total: totals,
            free: std::sync::Mutex::new(totals),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for room for one instance. `need` was checked against the
    /// pool's totals at load, so the wait ends once other calls finish.
    pub(crate) fn acquire(&self, need: PoolNeed) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while !need.fits_in(&free) {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        free.components -= 1;
        free.core_instances -= need.core_instances;
        free.memories -= need.memories;
        free.tables -= need.tables;
        SlotGuard { slots: self, need }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.slots.free.lock().unwrap_or_else(|e| e.into_inner());
        free.components += 1;
        free.core_instances += self.need.core_instances;
        free.memories += self.need.memories;
        free.tables += self.need.tables;
        drop(free);
        // Waiters need different amounts: let each check.
        self.slots.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn core_instantiations_are_counted_in_nested_components_too() {
        let wat = r#"(component
            (core module $m)
            (core instance (instantiate $m))
            (core instance (instantiate $m))
            (core instance)
            (component $inner
                (core module $n)
                (core instance (instantiate $n)))
            (instance (instantiate $inner)))"#;
        let bytes = wat::parse_str(wat).unwrap();
        assert_eq!(count_core_instantiations(&bytes), Some(3));
        assert_eq!(count_core_instantiations(b"\0asm garbage"), None);
    }

    #[test]
    fn a_large_instance_waits_for_room_and_small_ones_share_the_rest() {
        let totals = PoolTotals {
            components: 4,
            core_instances: 10,
            memories: 8,
            tables: 8,
        };
        let slots = Arc::new(Slots::new(totals));
        let big = PoolNeed {
            core_instances: 8,
            memories: 1,
            tables: 1,
        };
        let small = PoolNeed {
            core_instances: 2,
            memories: 1,
            tables: 1,
        };
        assert!(big.fits_in(&totals));
        let held = slots.acquire(small);
        let _also = slots.acquire(small);
        // 6 core instances left: the big one must wait for a small one.
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = slots.clone();
        let waiter = std::thread::spawn(move || {
            let _big = waiting.acquire(big);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(100))
                .is_err()
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the big instance gets its room");
        waiter.join().unwrap();
        let free = *slots.free.lock().unwrap();
        assert_eq!((free.components, free.core_instances), (3, 8));
    }
}
