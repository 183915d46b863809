//! Forwarding of the read side of a store, for wrappers that change only
//! how commits land (group commit, test stores that fail on purpose).

/// Implements every store trait except [`Store`](crate::Store) for `$ty` by
/// forwarding each method to `self.$field`:
///
/// ```ignore
/// waymark_core::forward_store_reads!([S: Store + ?Sized] GroupCommit<S> => inner);
/// waymark_core::forward_store_reads!([] FailingStore => inner);
/// ```
#[macro_export]
macro_rules! forward_store_reads {
    ([$($gen:tt)*] $ty:ty => $field:ident) => {
        impl<$($gen)*> $crate::RunStore for $ty {
            fn load_run(&self, run_id: &str) -> Result<$crate::RunState, $crate::StoreError> {
                self.$field.load_run(run_id)
            }
            fn list_runs(
                &self,
                query: &$crate::RunQuery,
            ) -> Result<Vec<$crate::RunState>, $crate::StoreError> {
                self.$field.list_runs(query)
            }
            fn event_waiters(
                &self,
                name: &str,
                scope: &str,
            ) -> Result<Vec<String>, $crate::StoreError> {
                self.$field.event_waiters(name, scope)
            }
            fn due_waits(
                &self,
                now_ms: u64,
                limit: usize,
            ) -> Result<Vec<String>, $crate::StoreError> {
                self.$field.due_waits(now_ms, limit)
            }
            fn next_wake_at(&self) -> Result<Option<u64>, $crate::StoreError> {
                self.$field.next_wake_at()
            }
            fn count_descendants(&self, root_run_id: &str) -> Result<u64, $crate::StoreError> {
                self.$field.count_descendants(root_run_id)
            }
        }

        impl<$($gen)*> $crate::LedgerStore for $ty {
            fn ledger(&self, run_id: &str) -> Result<Vec<$crate::StepRecord>, $crate::StoreError> {
                self.$field.ledger(run_id)
            }
            fn ledger_raw(&self, run_id: &str) -> Result<Vec<String>, $crate::StoreError> {
                self.$field.ledger_raw(run_id)
            }
            fn ledger_page(
                &self,
                run_id: &str,
                from: u64,
                limit: usize,
            ) -> Result<Vec<$crate::StepRecord>, $crate::StoreError> {
                self.$field.ledger_page(run_id, from, limit)
            }
        }

        impl<$($gen)*> $crate::EffectLog for $ty {
            fn effect_entry(
                &self,
                key: &str,
            ) -> Result<Option<$crate::EffectEntry>, $crate::StoreError> {
                self.$field.effect_entry(key)
            }
            fn effect_entries(
                &self,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<$crate::EffectEntry>, $crate::StoreError> {
                self.$field.effect_entries(after, limit)
            }
        }

        impl<$($gen)*> $crate::ArtifactStore for $ty {
            fn put_artifact(
                &self,
                bytes: &[u8],
                content_type: &str,
            ) -> Result<$crate::ArtifactMeta, $crate::StoreError> {
                self.$field.put_artifact(bytes, content_type)
            }
            fn get_artifact(
                &self,
                id: &str,
            ) -> Result<($crate::ArtifactMeta, Vec<u8>), $crate::StoreError> {
                self.$field.get_artifact(id)
            }
            fn artifact_meta(&self, id: &str) -> Result<$crate::ArtifactMeta, $crate::StoreError> {
                self.$field.artifact_meta(id)
            }
            fn list_artifacts(&self) -> Result<Vec<$crate::ArtifactMeta>, $crate::StoreError> {
                self.$field.list_artifacts()
            }
        }

        impl<$($gen)*> $crate::SnapshotStore for $ty {
            fn save_snapshot(&self, snapshot: &$crate::Snapshot) -> Result<(), $crate::StoreError> {
                self.$field.save_snapshot(snapshot)
            }
            fn load_snapshot(
                &self,
                snapshot_id: &str,
            ) -> Result<$crate::Snapshot, $crate::StoreError> {
                self.$field.load_snapshot(snapshot_id)
            }
            fn find_snapshots(
                &self,
                query: &$crate::SnapshotQuery,
            ) -> Result<Vec<$crate::Snapshot>, $crate::StoreError> {
                self.$field.find_snapshots(query)
            }
            fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool, $crate::StoreError> {
                self.$field.delete_snapshot(snapshot_id)
            }
        }

        impl<$($gen)*> $crate::RetentionStore for $ty {
            fn delete_run(
                &self,
                run_id: &str,
                ledger_len: u64,
            ) -> Result<Option<$crate::DeletedRun>, $crate::StoreError> {
                self.$field.delete_run(run_id, ledger_len)
            }
            fn delete_artifact_if_unreferenced(&self, artifact_id: &str) -> Result<bool, $crate::StoreError> {
                self.$field.delete_artifact_if_unreferenced(artifact_id)
            }
            fn delete_commands(&self, through_seq: u64, before_ms: u64) -> Result<u64, $crate::StoreError> {
                self.$field.delete_commands(through_seq, before_ms)
            }
            fn reclaim_space(&self) -> Result<(), $crate::StoreError> {
                self.$field.reclaim_space()
            }
        }

        impl<$($gen)*> $crate::ScheduleStore for $ty {
            fn create_schedule(&self, schedule: &$crate::Schedule) -> Result<(), $crate::StoreError> {
                self.$field.create_schedule(schedule)
            }
            fn update_schedule(&self, schedule: &$crate::Schedule) -> Result<(), $crate::StoreError> {
                self.$field.update_schedule(schedule)
            }
            fn load_schedule(&self, schedule_id: &str) -> Result<$crate::Schedule, $crate::StoreError> {
                self.$field.load_schedule(schedule_id)
            }
            fn list_schedules(&self) -> Result<Vec<$crate::Schedule>, $crate::StoreError> {
                self.$field.list_schedules()
            }
            fn delete_schedule(&self, schedule_id: &str) -> Result<bool, $crate::StoreError> {
                self.$field.delete_schedule(schedule_id)
            }
            fn due_schedules(
                &self,
                now_ms: u64,
                limit: usize,
            ) -> Result<Vec<$crate::Schedule>, $crate::StoreError> {
                self.$field.due_schedules(now_ms, limit)
            }
            fn next_schedule_at(&self) -> Result<Option<u64>, $crate::StoreError> {
                self.$field.next_schedule_at()
            }
        }

        impl<$($gen)*> $crate::CommandInbox for $ty {
            fn submit_command(
                &self,
                command: &$crate::Command,
            ) -> Result<$crate::Submitted, $crate::StoreError> {
                self.$field.submit_command(command)
            }
            fn commands_after(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<Vec<$crate::Command>, $crate::StoreError> {
                self.$field.commands_after(after, limit)
            }
            fn cursor(&self, consumer: &str) -> Result<u64, $crate::StoreError> {
                self.$field.cursor(consumer)
            }
            fn set_cursor(&self, consumer: &str, seq: u64) -> Result<(), $crate::StoreError> {
                self.$field.set_cursor(consumer, seq)
            }
            fn cursors(&self) -> Result<Vec<(String, u64)>, $crate::StoreError> {
                self.$field.cursors()
            }
        }

        impl<$($gen)*> $crate::LeaseStore for $ty {
            fn acquire_lease(
                &self,
                key: &str,
                owner: &str,
                now_ms: u64,
                ttl_ms: u64,
            ) -> Result<bool, $crate::StoreError> {
                self.$field.acquire_lease(key, owner, now_ms, ttl_ms)
            }
            fn release_lease(&self, key: &str, owner: &str) -> Result<(), $crate::StoreError> {
                self.$field.release_lease(key, owner)
            }
        }
    };
}

/// Inside an `impl Store for` of a wrapper: forwards how hosts share work
/// ([`Store::claim_runnable`](crate::Store::claim_runnable),
/// [`Store::claim_due_waits`](crate::Store::claim_due_waits),
/// [`Store::listen_for_wakeups`](crate::Store::listen_for_wakeups)) to
/// `self.$field`, so the wrapped store's own (PostgreSQL's `SKIP LOCKED`
/// and LISTEN/NOTIFY) is not hidden behind the trait's defaults.
#[macro_export]
macro_rules! forward_shared_work {
    ($field:ident) => {
        fn claim_runnable(
            &self,
            owner: &str,
            now_ms: u64,
            ttl_ms: u64,
            limit: usize,
        ) -> Result<$crate::Claimed, $crate::StoreError> {
            self.$field.claim_runnable(owner, now_ms, ttl_ms, limit)
        }

        fn claim_due_waits(
            &self,
            owner: &str,
            now_ms: u64,
            ttl_ms: u64,
            limit: usize,
        ) -> Result<$crate::Claimed, $crate::StoreError> {
            self.$field.claim_due_waits(owner, now_ms, ttl_ms, limit)
        }

        fn listen_for_wakeups(&self, listener: $crate::WakeupListener) -> bool {
            self.$field.listen_for_wakeups(listener)
        }
    };
}
