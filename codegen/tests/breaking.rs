//! `codegen breaking`: one small fixture per rule.

use pingora_config_codegen::breaking::{compare, pool_at, rules};
use prost_reflect::DescriptorPool;

fn pool(text: &str) -> DescriptorPool {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("proto/t")).expect("mkdir");
    std::fs::write(dir.path().join("proto/t/t.proto"), format!("syntax = \"proto3\";\npackage t;\n{text}"))
        .expect("write");
    pool_at(dir.path()).expect("compiles")
}

fn breaks(old: &str, new: &str) -> Vec<&'static str> {
    rules(&compare(&pool(old), &pool(new))).into_iter().collect()
}

const BASE: &str = "message M { string a = 1; repeated string b = 2; oneof o { string c = 3; int32 d = 4; } }
enum E { E_UNSPECIFIED = 0; ONE = 1; }
service S { rpc Get(M) returns (M); }";

#[test]
fn an_unchanged_or_compatible_schema_passes() {
    assert!(breaks(BASE, BASE).is_empty());
    let added = BASE.replace("int32 d = 4; }", "int32 d = 4; } string z = 9;").replace("ONE = 1;", "ONE = 1; TWO = 2;");
    assert!(breaks(BASE, &added).is_empty());
    let reserved = BASE.replace("string a = 1;", "reserved 1; reserved \"a\";");
    assert!(breaks(BASE, &reserved).is_empty());
}

#[test]
fn a_removed_field_needs_its_number_and_name_reserved() {
    assert_eq!(breaks(BASE, &BASE.replace("string a = 1;", "")), ["FIELD_NO_DELETE_UNLESS_RESERVED"]);
    assert_eq!(breaks(BASE, &BASE.replace("string a = 1;", "reserved 1;")), ["FIELD_NO_DELETE_UNLESS_RESERVED"]);
}

#[test]
fn type_label_name_json_name_and_oneof_changes_break() {
    assert_eq!(breaks(BASE, &BASE.replace("string a = 1;", "int64 a = 1;")), ["FIELD_SAME_TYPE"]);
    assert_eq!(breaks(BASE, &BASE.replace("repeated string b = 2;", "string b = 2;")), ["FIELD_SAME_LABEL"]);
    assert_eq!(breaks(BASE, &BASE.replace("string a = 1;", "optional string a = 1;")), ["FIELD_SAME_LABEL"]);
    assert_eq!(
        breaks(BASE, &BASE.replace("string a = 1;", "string a2 = 1;")),
        ["FIELD_SAME_JSON_NAME", "FIELD_SAME_NAME"]
    );
    assert_eq!(
        breaks(BASE, &BASE.replace("string a = 1;", "string a = 1 [json_name = \"x\"];")),
        ["FIELD_SAME_JSON_NAME"]
    );
    let moved = BASE.replace("oneof o { string c = 3; int32 d = 4; }", "string c = 3; oneof o { int32 d = 4; }");
    assert_eq!(breaks(BASE, &moved), ["FIELD_SAME_ONEOF"]);
}

#[test]
fn removed_messages_enums_values_services_and_rpcs_break() {
    let with_n = format!("{BASE}\nmessage N {{}}");
    assert_eq!(breaks(&with_n, BASE), ["MESSAGE_NO_DELETE"]);
    let with_f = format!("{BASE}\nenum F {{ F_UNSPECIFIED = 0; }}");
    assert_eq!(breaks(&with_f, BASE), ["ENUM_NO_DELETE"]);
    assert_eq!(breaks(BASE, &BASE.replace("ONE = 1;", "")), ["ENUM_VALUE_NO_DELETE_UNLESS_RESERVED"]);
    assert!(breaks(BASE, &BASE.replace("ONE = 1;", "reserved 1; reserved \"ONE\";")).is_empty());
    assert_eq!(breaks(BASE, &BASE.replace("ONE = 1;", "UNO = 1;")), ["ENUM_VALUE_SAME_NAME"]);
    let with_t = format!("{BASE}\nservice T {{}}");
    assert_eq!(breaks(&with_t, BASE), ["SERVICE_NO_DELETE"]);
    assert_eq!(breaks(BASE, &BASE.replace("rpc Get(M) returns (M);", "")), ["RPC_NO_DELETE"]);
}

#[test]
fn rpc_shape_changes_break() {
    let two = format!("{BASE}\nmessage N {{}}");
    assert_eq!(
        breaks(&two, &two.replace("rpc Get(M) returns (M)", "rpc Get(N) returns (M)")),
        ["RPC_SAME_REQUEST_TYPE"]
    );
    assert_eq!(
        breaks(&two, &two.replace("rpc Get(M) returns (M)", "rpc Get(M) returns (N)")),
        ["RPC_SAME_RESPONSE_TYPE"]
    );
    assert_eq!(
        breaks(&two, &two.replace("rpc Get(M) returns (M)", "rpc Get(M) returns (stream M)")),
        ["RPC_SAME_SERVER_STREAMING"]
    );
}
