//! Tools: functions a model or a workflow's `tool-calls` effect can call,
//! offered by a component that implements the `tools` world instead of the
//! `workflow` world.
//!
//! Like a node, a tool runs in a fresh, limited instance for every call and
//! does no I/O: it is a function of its arguments. Write each tool as a plain
//! function taking its arguments (a `serde_json::Value` or any
//! `Deserialize` type) and returning a [`ToolResult`] of anything
//! `Serialize`, then export them all with [`tools!`](crate::tools):
//!
//! ```rust,standalone_crate
//! use serde::Deserialize;
//! use serde_json::{Value, json};
//! use waymark_guest::prelude::*;
//!
//! waymark_guest::tools! {
//!     "lookup_order" => {
//!         description: "Look up an order by its id.",
//!         parameters: json!({
//!             "type": "object",
//!             "properties": { "order_id": { "type": "string" } },
//!             "required": ["order_id"],
//!         }),
//!         read_only: true,
//!         handler: lookup_order,
//!     },
//!     "echo" => {
//!         description: "Return the arguments unchanged.",
//!         parameters: r#"{"type": "object"}"#,
//!         read_only: true,
//!         handler: |arguments: Value| Ok(arguments),
//!     },
//! }
//!
//! #[derive(Deserialize)]
//! struct Lookup {
//!     order_id: String,
//! }
//!
//! fn lookup_order(args: Lookup) -> ToolResult {
//!     if args.order_id.is_empty() {
//!         return Err(ToolError::new("not_found", "no order has an empty id"));
//!     }
//!     log::info(format!("looking up {}", args.order_id));
//!     Ok(json!({ "order_id": args.order_id, "status": "shipped" }))
//! }
//!
//! // Tools are plain functions: test them without a host.
//! # fn main() {
//! let out = lookup_order(Lookup { order_id: "A-1".into() }).unwrap();
//! assert_eq!(out["status"], "shipped");
//! # }
//! ```
//!
//! Use the macro once per crate, and not in a crate that also uses
//! [`workflow!`](crate::workflow): a component is either a workflow or a set
//! of tools.

use core::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit;

/// What a tool function returns: its output (JSON by default) or the
/// tool's own error.
pub type ToolResult<T = serde_json::Value> = Result<T, ToolError>;

/// A failure reported by a tool, such as an order that does not exist. The
/// host passes it on as the call's error; limits and traps are reported by
/// the host itself.
///
/// Errors the SDK produces itself use these codes:
///
/// | code | when |
/// | --- | --- |
/// | `invalid-arguments` | the arguments do not deserialize into the tool's argument type |
/// | `json` | serializing the output failed (`From<serde_json::Error>`) |
/// | `unknown-tool` | [`tools!`](crate::tools) was asked to run a tool it does not list |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    code: String,
    message: String,
}

impl ToolError {
    /// An error with a short machine-readable code and a message for people
    /// and models.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ToolError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error for arguments a tool cannot use.
    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        ToolError::new("invalid-arguments", message)
    }

    /// The error [`tools!`](crate::tools) returns for a tool it does not
    /// list.
    pub fn unknown_tool(name: &str) -> Self {
        ToolError::new(
            "unknown-tool",
            format!("this component has no tool named `{name}`"),
        )
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ToolError {}

impl From<serde_json::Error> for ToolError {
    fn from(err: serde_json::Error) -> Self {
        ToolError::new("json", err.to_string())
    }
}

impl From<ToolError> for wit::ToolError {
    fn from(err: ToolError) -> Self {
        wit::ToolError {
            code: err.code,
            message: err.message,
        }
    }
}

/// Exports tools to the host.
///
/// ```rust,ignore
/// waymark_guest::tools! {
///     "lookup_order" => {
///         description: "Look up an order by its id.",
///         parameters: json!({ "type": "object", "properties": { "order_id": { "type": "string" } } }),
///         read_only: true,
///         handler: lookup_order,
///     },
///     "catalog" => {
///         description: "The whole catalog.",
///         parameters: r#"{"type": "object"}"#,
///         read_only: true,
///         raw_handler: |_arguments: &str| Ok(include_str!("catalog.json").to_owned()),
///     },
/// }
/// ```
///
/// For each tool, in this order:
///
/// * `description`: a `&'static str` for the model deciding whether to call
///   the tool.
/// * `parameters`: the JSON schema of the arguments, as a
///   `serde_json::Value` (`json!`) or JSON text (`&str`, `String`, such as
///   `include_str!("schema.json")`). It is evaluated when the host loads the
///   component, which refuses a schema that is not a JSON object.
/// * `read_only`: whether the tool only looks things up (see the WIT
///   `tool-info`).
/// * `handler`: a function (or a closure that captures nothing) from the
///   arguments to a [`ToolResult`]. The arguments are any
///   `DeserializeOwned` type (`serde_json::Value` for untyped ones);
///   arguments that do not deserialize are an `invalid-arguments` error
///   without calling the function. The output is any `Serialize` type.
/// * or `raw_handler`: a `fn(&str) -> ToolResult<String>` receiving the
///   arguments as JSON text and returning JSON text, for a tool that already
///   holds its output as JSON. The host checks that the text is JSON.
///
/// `describe` lists the tools in the order given; `call` runs the one named,
/// and returns a [`ToolError`] with code `unknown-tool` for any other name.
/// It is a compile-time error for two tools to share a name or for a name to
/// be empty. A panic traps the instance: the host reports the call as
/// trapped, with the panic message in the call's log.
///
/// Use the macro once per crate, and not together with
/// [`workflow!`](crate::workflow). Like that macro, the expansion contains
/// the generated `unsafe extern "C"` exports under `#[allow(unsafe_code)]`.
#[macro_export]
macro_rules! tools {
    (
        $(
            $name:literal => {
                description: $description:expr,
                parameters: $parameters:expr,
                read_only: $read_only:expr,
                $kind:ident: $handler:expr $(,)?
            }
        ),+ $(,)?
    ) => {
        // The generated exports are `unsafe extern "C"` functions with
        // `#[unsafe(export_name)]`; they are the SDK's, not the author's.
        #[allow(unsafe_code, reason = "the exports wit-bindgen generates")]
        const _: () = {
            const __WAYMARK_TOOLS: $crate::__private::Toolbox = $crate::__private::Toolbox {
                tools: &[$(
                    $crate::__private::Tool {
                        name: $name,
                        description: $description,
                        parameters: || $crate::__private::schema_text($parameters),
                        read_only: $read_only,
                        handler: $crate::__tool_handler!($kind: $handler),
                    }
                ),+],
            };
            const _: () = ::core::assert!(
                __WAYMARK_TOOLS.names_are_valid(),
                "waymark_guest::tools!: tool names must be non-empty and unique"
            );

            struct __WaymarkTools;

            impl $crate::__private::ToolGuest for __WaymarkTools {
                fn describe() -> ::std::vec::Vec<$crate::wit::ToolInfo> {
                    __WAYMARK_TOOLS.describe()
                }

                fn call(
                    name: ::std::string::String,
                    arguments: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, $crate::wit::ToolError> {
                    __WAYMARK_TOOLS.call(&name, &arguments)
                }
            }

            $crate::tool_bindings::export!(__WaymarkTools with_types_in $crate::tool_bindings);
        };
    };
}

/// Turns the handler of one [`tools!`] entry into a
/// [`__private::ToolHandler`](crate::__private::ToolHandler).
#[doc(hidden)]
#[macro_export]
macro_rules! __tool_handler {
    (handler: $handler:expr) => {
        |arguments: &str| $crate::__private::invoke($handler, arguments)
    };
    (raw_handler: $handler:expr) => {{
        let handler: $crate::__private::ToolHandler = $handler;
        handler
    }};
    ($other:ident: $handler:expr) => {
        ::core::compile_error!(::core::concat!(
            "waymark_guest::tools!: expected `handler` or `raw_handler`, found `",
            ::core::stringify!($other),
            "`"
        ))
    };
}

/// Support for [`tools!`]; not a stable API.
#[doc(hidden)]
pub mod private {
    pub use crate::tool_bindings::exports::waymark::workflow::tool::Guest as ToolGuest;

    use super::*;

    /// A tool's entry point: the arguments as JSON text to the output as
    /// JSON text.
    pub type ToolHandler = fn(&str) -> ToolResult<String>;

    /// One entry of [`tools!`].
    pub struct Tool {
        pub name: &'static str,
        pub description: &'static str,
        /// The schema as JSON text; a function so that `json!` can build it.
        pub parameters: fn() -> String,
        pub read_only: bool,
        pub handler: ToolHandler,
    }

    /// What [`tools!`] expands to.
    pub struct Toolbox {
        pub tools: &'static [Tool],
    }

    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    impl Toolbox {
        /// Whether every name is non-empty and unique (usable in constants).
        pub const fn names_are_valid(&self) -> bool {
            let mut i = 0;
            while i < self.tools.len() {
                if self.tools[i].name.is_empty() {
                    return false;
                }
                let mut j = i + 1;
                while j < self.tools.len() {
                    if same(self.tools[i].name, self.tools[j].name) {
                        return false;
                    }
                    j += 1;
                }
                i += 1;
            }
            true
        }

        pub fn describe(&self) -> Vec<wit::ToolInfo> {
            crate::log::install_panic_hook();
            self.tools
                .iter()
                .map(|tool| wit::ToolInfo {
                    name: tool.name.into(),
                    description: tool.description.into(),
                    parameters: (tool.parameters)(),
                    read_only: tool.read_only,
                })
                .collect()
        }

        pub fn call(&self, name: &str, arguments: &str) -> Result<String, wit::ToolError> {
            crate::log::install_panic_hook();
            let output = match self.tools.iter().find(|tool| tool.name == name) {
                Some(tool) => (tool.handler)(arguments),
                None => Err(ToolError::unknown_tool(name)),
            };
            output.map_err(Into::into)
        }
    }

    /// Runs a typed handler on JSON text: deserializes the arguments,
    /// serializes the output.
    pub fn invoke<A, O>(
        handler: impl FnOnce(A) -> ToolResult<O>,
        arguments: &str,
    ) -> ToolResult<String>
    where
        A: DeserializeOwned,
        O: Serialize,
    {
        let arguments = serde_json::from_str(arguments)
            .map_err(|e| ToolError::invalid_arguments(e.to_string()))?;
        let output = handler(arguments)?;
        Ok(serde_json::to_string(&output)?)
    }

    /// What `parameters:` of [`tools!`] accepts.
    pub trait Schema {
        fn into_text(self) -> String;
    }

    impl Schema for serde_json::Value {
        fn into_text(self) -> String {
            self.to_string()
        }
    }

    impl Schema for &str {
        fn into_text(self) -> String {
            self.to_owned()
        }
    }

    impl Schema for String {
        fn into_text(self) -> String {
            self
        }
    }

    pub fn schema_text(schema: impl Schema) -> String {
        schema.into_text()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::private::{Tool, Toolbox, invoke};
    use crate::prelude::*;

    // The macro expands on the host target too; this checks that the syntax
    // in the docs compiles, closures and raw handlers included.
    mod exported {
        use serde_json::{Value, json};

        use crate::prelude::*;

        crate::tools! {
            "a" => {
                description: "A.",
                parameters: json!({"type": "object"}),
                read_only: true,
                handler: a,
            },
            "b" => {
                description: "B.",
                parameters: "{}",
                read_only: false,
                handler: |v: Value| Ok(v),
            },
            "c" => {
                description: "C.",
                parameters: String::from("{}"),
                read_only: false,
                raw_handler: |_: &str| Ok("not json".to_owned())
            }
        }

        fn a(_: Value) -> ToolResult {
            Ok(json!(1))
        }
    }

    #[derive(Deserialize)]
    struct Args {
        n: u32,
    }

    fn double(args: Args) -> ToolResult<u32> {
        match args.n {
            0 => Err(ToolError::new("zero", "nothing to double")),
            n => Ok(n * 2),
        }
    }

    const BOX: Toolbox = Toolbox {
        tools: &[
            Tool {
                name: "double",
                description: "Doubles n.",
                parameters: || json!({"type": "object"}).to_string(),
                read_only: true,
                handler: |a: &str| invoke(double, a),
            },
            Tool {
                name: "raw",
                description: "",
                parameters: || "{}".into(),
                read_only: false,
                handler: |a: &str| Ok(format!("[{a}]")),
            },
        ],
    };

    fn tool(name: &'static str) -> Tool {
        Tool {
            name,
            description: "",
            parameters: String::new,
            read_only: false,
            handler: |_| Ok(String::new()),
        }
    }

    #[test]
    fn describe_lists_tools_in_order() {
        assert_eq!(
            BOX.describe(),
            [
                wit::ToolInfo {
                    name: "double".into(),
                    description: "Doubles n.".into(),
                    parameters: r#"{"type":"object"}"#.into(),
                    read_only: true,
                },
                wit::ToolInfo {
                    name: "raw".into(),
                    description: String::new(),
                    parameters: "{}".into(),
                    read_only: false,
                },
            ]
        );
    }

    #[test]
    fn call_dispatches_and_converts() {
        assert_eq!(BOX.call("double", r#"{"n": 4}"#).unwrap(), "8");
        assert_eq!(BOX.call("raw", "{}").unwrap(), "[{}]");

        let err = BOX.call("double", r#"{"n": 0}"#).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("zero", "nothing to double")
        );
        let err = BOX.call("double", r#"{"m": 1}"#).unwrap_err();
        assert_eq!(err.code, "invalid-arguments");
        assert!(err.message.contains("`n`"), "{}", err.message);
        let err = BOX.call("nope", "{}").unwrap_err();
        assert_eq!(err.code, "unknown-tool");
        assert!(err.message.contains("nope"));
    }

    #[test]
    fn names_must_be_non_empty_and_unique() {
        assert!(BOX.names_are_valid());
        let empty = Toolbox { tools: &[] };
        assert!(empty.names_are_valid());
        assert!(
            !Toolbox {
                tools: Box::leak(Box::new([tool("a"), tool("")]))
            }
            .names_are_valid()
        );
        assert!(
            !Toolbox {
                tools: Box::leak(Box::new([tool("a"), tool("b"), tool("a")]))
            }
            .names_are_valid()
        );
        assert!(
            Toolbox {
                tools: Box::leak(Box::new([tool("ab"), tool("a")]))
            }
            .names_are_valid()
        );
    }

    #[test]
    fn tool_errors_convert() {
        let err: ToolError = serde_json::from_str::<Value>("{").unwrap_err().into();
        assert_eq!(err.code(), "json");
        let err = ToolError::new("not_found", "no such order");
        assert_eq!(err.to_string(), "not_found: no such order");
        assert_eq!(
            wit::ToolError::from(err),
            wit::ToolError {
                code: "not_found".into(),
                message: "no such order".into()
            }
        );
    }
}
