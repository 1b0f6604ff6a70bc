// The small parsers of the app pages.
import { describe, expect, it } from "vitest";

import { requestsByRoute } from "../src/app/Dashboard";
import { parseSelector } from "../src/app/ResourceList";

describe("label filter", () => {
  it("reads key=value pairs and bare keys, separated by commas", () => {
    expect(parseSelector(" team=payments, tier ,a=b=c,")).toEqual([
      { key: "team", value: "payments" },
      { key: "tier", value: "" },
      { key: "a", value: "b=c" },
    ]);
  });
});

describe("request rates", () => {
  it("sums the request counter by route across its other labels", () => {
    const text = [
      "# HELP pingora_config_http_requests_total HTTP requests.",
      "# TYPE pingora_config_http_requests_total counter",
      'pingora_config_http_requests_total{consumer="",route="orders",service="",status="200",upstream="o"} 7',
      'pingora_config_http_requests_total{consumer="",route="orders",service="",status="502",upstream="o"} 2',
      'pingora_config_http_requests_total{consumer="",route="hello",service="",status="200",upstream=""} 1',
      'pingora_config_http_request_duration_seconds_count{route="orders",service=""} 9',
    ].join("\n");
    expect([...requestsByRoute(text)]).toEqual([
      ["orders", 9],
      ["hello", 1],
    ]);
  });
});
