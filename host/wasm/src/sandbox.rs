//! The per-step sandbox: a fresh store under fuel, hostcall and epoch limits.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use crate::engine::{WasmEngine, WasmError};
use crate::limits::{StepLimits, StepState};
use crate::pool::{PoolNeed, Slots};

impl WasmEngine {
    /// The sandbox every call of a component loaded with `limits` runs in.
    /// `bytes` and `component` tell how much of the pool one instance takes.
    pub(crate) fn sandbox(
        &self,
        limits: StepLimits,
        bytes: &[u8],
        component: &Component,
    ) -> Result<Sandbox, WasmError> {
        let need = PoolNeed::of(bytes, component);
        // The slots gate every call, pooled or not: a component that can
        // never fit would wait forever.
        let totals = self.slots.total;
        if !need.fits_in(&totals) {
            return Err(WasmError::Config(format!(
                "one instance of this component needs {need:?} of the instance pool, which \
                 holds only {totals:?}: raise EngineConfig::pool_instances"
            )));
        }
        Ok(Sandbox {
            need,
            limits,
            data: None,
            slots: self.slots.clone(),
            epoch_tick: self.config.epoch_tick,
            consume_fuel: self.config.consume_fuel,
            epoch_interruption: self.config.epoch_interruption,
        })
    }
}

/// What every call into a component runs under: its limits, the pool's
/// slots and the engine's metering settings. Workflows and tool components
/// share it, so both are held to the same sandbox.
pub(crate) struct Sandbox {
    /// What one instance takes from the pool.
    need: PoolNeed,
    pub(crate) limits: StepLimits,
    /// The read-only data directory granted to the component, if any.
    pub(crate) data: Option<Arc<cap_std::fs::Dir>>,
    slots: Arc<Slots>,
    epoch_tick: Duration,
    consume_fuel: bool,
    epoch_interruption: bool,
}

/// How one call in the [`Sandbox`] ended.
pub(crate) struct Ran<R> {
    pub(crate) result: wasmtime::Result<R>,
    /// The store's data: what was logged and which limit was hit.
    pub(crate) state: StepState,
    /// The guest was instantiated and called (see
    /// [`classify`](crate::failure::classify)).
    pub(crate) entered: bool,
    pub(crate) fuel_used: Option<u64>,
}

impl Sandbox {
    /// Instantiates the component in a fresh store under the limits and
    /// runs `f` on the instance. A store that cannot be set up is reported
    /// as an error before anything was entered, which
    /// [`classify`](crate::failure::classify) names a host error.
    pub(crate) fn run<I, R>(
        &self,
        engine: &Engine,
        instantiate: impl FnOnce(&mut Store<StepState>) -> wasmtime::Result<I>,
        f: impl FnOnce(&mut Store<StepState>, &I) -> wasmtime::Result<R>,
    ) -> Ran<R> {
        let limits = &self.limits;
        // Wait for a pool slot rather than failing the call when every slot
        // is taken by concurrent calls. Held until the store (and with it
        // the instance's pool slot) is dropped, at the end.
        let _slot = self.slots.acquire(self.need);
        let mut state = StepState::new(limits.clone());
        state.data = self.data.clone();
        let mut store = Store::new(engine, state);
        store.limiter(|s| s);
        let mut entered = false;
        let result = self.prepare(&mut store).and_then(|()| {
            let inst = instantiate(&mut store)?;
            entered = true;
            f(&mut store, &inst)
        });
        let fuel_used = self
            .consume_fuel
            .then(|| limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0)));
        Ran {
            result,
            state: store.into_data(),
            entered,
            fuel_used,
        }
    }

    /// Sets the store's fuel, hostcall budget and epoch deadline.
    fn prepare(&self, store: &mut Store<StepState>) -> wasmtime::Result<()> {
        let limits = &self.limits;
        if self.consume_fuel {
            store.set_fuel(limits.fuel)?;
        }
        // Bounds what the host copies out of the guest in one call (the plan,
        // a log line): without it a guest could make the host allocate far
        // more than the plan limit before the plan's size is checked.
        store.set_hostcall_fuel(hostcall_budget(limits));
        if self.epoch_interruption {
            let tick_ms = self.epoch_tick.as_millis().max(1);
            let ticks = (limits.timeout.as_millis().div_ceil(tick_ms) as u64).max(1);
            store.set_epoch_deadline(ticks);
        }
        Ok(())
    }
}

/// Bytes the guest may hand the host in one call: the larger of the plan and
/// log limits, doubled for list and record overhead, plus slack for the
/// small fixed parts.
pub(crate) fn hostcall_budget(limits: &StepLimits) -> usize {
    limits
        .max_plan_bytes
        .max(limits.max_log_bytes)
        .saturating_mul(2)
        .saturating_add(64 << 10)
}
