//! Waymark on a real PostgreSQL server (the test cluster of
//! `waymark_postgres::testing`): the command line across processes, with
//! the components in a shared `--data-dir`.

mod cli;
mod flow;
mod scale;
mod schedules;
