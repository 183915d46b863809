//! Host imports: the functions of the `host` interface the guest calls.

use waymark_core::LogLine;

use crate::bindings::waymark::workflow::{host, types as wit};
use crate::limits::StepState;

impl wit::Host for StepState {}

impl host::Host for StepState {
    fn log(
        &mut self,
        level: host::LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let bytes = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.log_bytes = self.log_bytes.saturating_add(bytes);
        if self.logs.len() >= self.limits.max_log_lines
            || self.log_bytes > self.limits.max_log_bytes
        {
            self.log_limit_exceeded = true;
            return Err(wasmtime::Error::msg("log limit exceeded"));
        }
        let level = match level {
            host::LogLevel::Trace => "trace",
            host::LogLevel::Debug => "debug",
            host::LogLevel::Info => "info",
            host::LogLevel::Warn => "warn",
            host::LogLevel::Error => "error",
        };
        tracing::debug!(target: "waymark::guest", level, "{message}");
        self.logs.push(LogLine {
            level: level.to_owned(),
            message,
            fields,
        });
        Ok(())
    }

    fn read_data(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let Some(dir) = &self.data else {
            return Ok(Err("no data directory is granted to this workflow".into()));
        };
        // cap-std resolves the path inside `dir` only: absolute paths, `..`
        // past the root and symlinks leading out are refused.
        let budget = self.limits.max_plan_bytes.saturating_sub(self.data_bytes);
        let file = match dir.open(&path) {
            Ok(f) => f,
            Err(e) => return Ok(Err(format!("cannot open '{path}': {e}"))),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(Err(format!("'{path}' is not a file")));
        }
        if len > budget as u64 {
            return Ok(Err(format!(
                "'{path}' is {len} bytes; {budget} bytes of data may still be read in this step"
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        use std::io::Read;
        // Read at most the budget even if the file grew meanwhile.
        if let Err(e) = file.take(budget as u64 + 1).read_to_end(&mut bytes) {
            return Ok(Err(format!("cannot read '{path}': {e}")));
        }
        if bytes.len() > budget {
            return Ok(Err(format!(
                "'{path}' grew past the data budget while being read"
            )));
        }
        self.data_bytes += bytes.len();
        Ok(Ok(bytes))
    }
}
