// @pingora-config/client: the generated messages and services, the facade
// and the schema's validation rules. Transports: ./node.js and ./web.js.
export * from "./gen/client.js";
export * from "./gen/pingora_config/v1/admin_pb.js";
export * from "./gen/pingora_config/v1/bootstrap_pb.js";
export * from "./gen/pingora_config/v1/common_pb.js";
export * from "./gen/pingora_config/v1/config_pb.js";
export * from "./gen/pingora_config/v1/consumer_pb.js";
export * from "./gen/pingora_config/v1/global_rule_pb.js";
export * from "./gen/pingora_config/v1/plugins_pb.js";
export * from "./gen/pingora_config/v1/route_pb.js";
export * from "./gen/pingora_config/v1/service_pb.js";
export * from "./gen/pingora_config/v1/ssl_pb.js";
export * from "./gen/pingora_config/v1/upstream_pb.js";
export * from "./validate.js";
