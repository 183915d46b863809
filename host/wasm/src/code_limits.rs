//! Bounds on a component's code, checked before anything is compiled.
//!
//! Cranelift's time grows faster than linearly in some shapes of code (one
//! function of a million nested blocks compiled for more than ten minutes),
//! and a compile cannot be interrupted. An untrusted component is therefore
//! measured first, in one linear pass over its bytes, and refused with a
//! typed error when a function is larger or deeper than any real guest
//! needs. The defaults leave ample room for interpreters compiled to wasm
//! (the Python and JavaScript guests' largest functions are far below them).

use wasmparser::{Operator, Parser, Payload};

use crate::engine::WasmError;

/// What a component's code may be at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeLimits {
    /// Bytes of one function body.
    pub max_function_bytes: usize,
    /// Blocks, loops and ifs open at once inside one function.
    pub max_nesting: u32,
    /// Functions with a body, over every core module of the component.
    pub max_functions: u32,
    /// Locals one function declares.
    pub max_locals: u32,
    /// Bytes of all function bodies together.
    pub max_code_bytes: usize,
}

impl Default for CodeLimits {
    fn default() -> Self {
        Self {
            max_function_bytes: 2 << 20,
            max_nesting: 1_000,
            max_functions: 200_000,
            max_locals: 50_000,
            max_code_bytes: 256 << 20,
        }
    }
}

/// What [`check`] measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeStats {
    /// Functions with a body, over every core module.
    pub functions: u32,
    /// Bytes of all function bodies together.
    pub code_bytes: usize,
    /// Bytes of the largest function body.
    pub largest_function_bytes: usize,
    /// The most blocks, loops and ifs open at once in any function.
    pub deepest_nesting: u32,
    /// The most locals one function declares.
    pub most_locals: u32,
}

/// Measures every function body of `bytes` (a component or a core module,
/// nested modules included) and refuses the first that passes `limits`.
/// Malformed bytes are left to the compiler, which names the problem.
pub fn check(bytes: &[u8], limits: &CodeLimits) -> Result<CodeStats, WasmError> {
    let mut stats = CodeStats::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(Payload::CodeSectionEntry(body)) = payload else {
            continue;
        };
        stats.functions += 1;
        let size = body.range().len();
        stats.code_bytes += size;
        stats.largest_function_bytes = stats.largest_function_bytes.max(size);
        let index = stats.functions - 1;
        if stats.functions > limits.max_functions {
            return Err(too_complex(format!(
                "it has more than {} functions",
                limits.max_functions
            )));
        }
        if size > limits.max_function_bytes {
            return Err(too_complex(format!(
                "function {index} is {size} bytes; the limit is {}",
                limits.max_function_bytes
            )));
        }
        if stats.code_bytes > limits.max_code_bytes {
            return Err(too_complex(format!(
                "its code is more than {} bytes",
                limits.max_code_bytes
            )));
        }
        let locals = count_locals(&body);
        stats.most_locals = stats.most_locals.max(locals);
        if locals > limits.max_locals {
            return Err(too_complex(format!(
                "function {index} declares {locals} locals; the limit is {}",
                limits.max_locals
            )));
        }
        let nesting = deepest_nesting(&body, limits.max_nesting);
        stats.deepest_nesting = stats.deepest_nesting.max(nesting);
        if nesting > limits.max_nesting {
            return Err(too_complex(format!(
                "function {index} nests blocks more than {} deep",
                limits.max_nesting
            )));
        }
    }
    Ok(stats)
}

fn too_complex(reason: String) -> WasmError {
    WasmError::TooComplex(reason)
}

/// Locals a body declares (saturating; an unreadable list counts as what
/// was read, and the compiler reports it).
fn count_locals(body: &wasmparser::FunctionBody<'_>) -> u32 {
    let Ok(reader) = body.get_locals_reader() else {
        return 0;
    };
    reader
        .into_iter()
        .map_while(Result::ok)
        .fold(0u32, |n, (count, _)| n.saturating_add(count))
}

/// The most blocks open at once in `body`, counting no further than one
/// past `stop` (enough to refuse it).
fn deepest_nesting(body: &wasmparser::FunctionBody<'_>, stop: u32) -> u32 {
    let Ok(reader) = body.get_operators_reader() else {
        return 0;
    };
    let (mut depth, mut deepest) = (0u32, 0u32);
    for op in reader.into_iter().map_while(Result::ok) {
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Try { .. }
            | Operator::TryTable { .. } => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > stop {
                    break;
                }
            }
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_module(levels: usize) -> Vec<u8> {
        let mut wat = String::from("(module (func");
        for _ in 0..levels {
            wat.push_str(" (block");
        }
        for _ in 0..levels {
            wat.push(')');
        }
        wat.push_str("))");
        wat::parse_str(&wat).unwrap()
    }

    #[test]
    fn nesting_is_measured_and_bounded() {
        let limits = CodeLimits {
            max_nesting: 10,
            ..CodeLimits::default()
        };
        let stats = check(&nested_module(10), &limits).unwrap();
        assert_eq!((stats.functions, stats.deepest_nesting), (1, 10));
        let err = check(&nested_module(11), &limits).unwrap_err();
        assert!(matches!(err, WasmError::TooComplex(_)), "{err}");
        assert!(err.to_string().contains("more than 10 deep"), "{err}");
    }

    #[test]
    fn function_size_count_and_locals_are_bounded() {
        let module = wat::parse_str(
            "(module (func (local i32 i32 i32)) (func (local i64)) (func nop nop nop))",
        )
        .unwrap();
        let stats = check(&module, &CodeLimits::default()).unwrap();
        assert_eq!((stats.functions, stats.most_locals), (3, 3));
        let tight = |f: fn(&mut CodeLimits)| {
            let mut l = CodeLimits::default();
            f(&mut l);
            check(&module, &l).unwrap_err().to_string()
        };
        assert!(tight(|l| l.max_functions = 2).contains("more than 2 functions"));
        assert!(tight(|l| l.max_locals = 2).contains("declares 3 locals"));
        assert!(tight(|l| l.max_function_bytes = 3).contains("the limit is 3"));
        assert!(tight(|l| l.max_code_bytes = 5).contains("more than 5 bytes"));
    }
}
