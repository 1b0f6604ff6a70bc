// The form generator, field kind by field kind, then the schema's
// validation messages and the placement of the gateway's violations.
import { create } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { ValidateConfigResponseSchema } from "@pingora-config/client";
import { fireEvent, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";
import { describe, expect, it } from "vitest";

import { MessageForm } from "../src/form/Form";
import { schema, type SchemaMeta } from "../src/form/schema";
import { serverViolations, validateValue } from "../src/form/validate";
import { domId, errorMap, type ErrorMap, type JsonObject } from "../src/form/values";
import { fixture } from "./fixture";

/** Renders a form and records every value it reports. */
function renderForm(opts: { meta?: SchemaMeta; type?: string; value?: JsonObject; errors?: ErrorMap; readOnly?: boolean } = {}) {
  const seen: JsonObject[] = [];
  function Harness() {
    const [value, setValue] = useState<JsonObject>(opts.value ?? {});
    return (
      <MessageForm
        meta={opts.meta ?? fixture}
        type={opts.type ?? "test.Thing"}
        value={value}
        onChange={(v) => {
          seen.push(v);
          setValue(v);
        }}
        errors={opts.errors}
        readOnly={opts.readOnly}
      />
    );
  }
  const r = render(<Harness />);
  return { ...r, last: () => seen[seen.length - 1] ?? {} };
}

const field = (path: string) => document.getElementById(domId(path)) as HTMLInputElement;
const row = (path: string) => document.querySelector(`[data-path="${path}"]`) as HTMLElement;

describe("form generator: field kinds", () => {
  it("renders a string field labelled by its name, with its proto comment as help", async () => {
    const { last } = renderForm();
    const input = screen.getByLabelText(/^Id/);
    expect(within(row("id")).getByText("Unique id of the thing.")).toBeTruthy();
    expect(input.getAttribute("aria-describedby")).toContain(`${domId("id")}-help`);
    await userEvent.type(input, "orders");
    expect(last().id).toBe("orders");
  });

  it("renders integers as number inputs bounded by the rules, and stores numbers", async () => {
    const { last } = renderForm();
    const input = screen.getByLabelText(/^Port/);
    expect(input.getAttribute("type")).toBe("number");
    expect(input.getAttribute("min")).toBe("1");
    expect(input.getAttribute("max")).toBe("65535");
    await userEvent.type(input, "8080");
    expect(last().port).toBe(8080);
    await userEvent.clear(input);
    expect("port" in last()).toBe(false);
  });

  it("hides secrets in a password input", () => {
    renderForm();
    expect(screen.getByLabelText(/^Secret key/).getAttribute("type")).toBe("password");
  });

  it("offers unset/true/false for a bool with presence, showing the documented default", async () => {
    const { last } = renderForm();
    const select = screen.getByLabelText(/^Enabled/) as HTMLSelectElement;
    expect([...select.options].map((o) => o.text)).toEqual(["(default: true)", "true", "false"]);
    await userEvent.selectOptions(select, "false");
    expect(last().enabled).toBe(false);
  });

  it("renders a plain bool as a checkbox", async () => {
    const { last } = renderForm();
    await userEvent.click(screen.getByLabelText(/^Verbose/));
    expect(last().verbose).toBe(true);
  });

  it("renders an enum as a select of its values without the zero value, with the value's comment", async () => {
    const { last } = renderForm();
    const select = screen.getByLabelText(/^Mode/) as HTMLSelectElement;
    expect([...select.options].map((o) => o.value)).toEqual(["", "FAST", "SAFE"]);
    await userEvent.selectOptions(select, "SAFE");
    expect(last().mode).toBe("SAFE");
    expect(within(row("mode")).getByText("Checks everything.")).toBeTruthy();
  });

  it("takes a duration as text in proto-JSON form", async () => {
    const { last } = renderForm();
    const input = screen.getByLabelText(/^Timeout/);
    expect(input.getAttribute("placeholder")).toContain("1.5s");
    await userEvent.type(input, "2.5s");
    expect(last().timeout).toBe("2.5s");
  });

  it("sets, edits and removes a nested message in a collapsible section", async () => {
    const { last } = renderForm();
    await userEvent.click(screen.getByRole("button", { name: "Set inner" }));
    expect(last().inner).toEqual({});
    const section = row("inner");
    expect(section.tagName).toBe("DETAILS");
    await userEvent.type(within(section).getByLabelText(/^Host/), "10.0.0.7");
    expect(last().inner).toEqual({ host: "10.0.0.7" });
    await userEvent.click(within(section).getByRole("button", { name: "Remove inner" }));
    expect("inner" in last()).toBe(false);
  });

  it("adds and removes rows of a list of scalars", async () => {
    const { last } = renderForm();
    await userEvent.click(screen.getByRole("button", { name: "Add tags" }));
    await userEvent.click(screen.getByRole("button", { name: "Add tags" }));
    await userEvent.type(screen.getByLabelText("Tags 1"), "a");
    await userEvent.type(screen.getByLabelText("Tags 2"), "b");
    expect(last().tags).toEqual(["a", "b"]);
    await userEvent.click(screen.getByRole("button", { name: "Remove tags 1" }));
    expect(last().tags).toEqual(["b"]);
  });

  it("adds rows of a list of messages, each with the message's fields", async () => {
    const { last } = renderForm();
    await userEvent.click(screen.getByRole("button", { name: "Add nodes" }));
    await userEvent.type(field("nodes[0].host"), "127.0.0.1");
    await userEvent.type(field("nodes[0].weight"), "3");
    expect(last().nodes).toEqual([{ host: "127.0.0.1", weight: 3 }]);
  });

  it("edits a map as key/value rows", async () => {
    const { last } = renderForm();
    await userEvent.type(screen.getByLabelText("New labels key"), "team");
    await userEvent.click(screen.getByRole("button", { name: "Add labels entry" }));
    await userEvent.type(screen.getByLabelText("Labels team value"), "payments");
    expect(last().labels).toEqual({ team: "payments" });
    await userEvent.click(screen.getByRole("button", { name: "Remove labels team" }));
    expect("labels" in last()).toBe(false);
  });

  it("lets the user choose one member of a oneof, clearing the others", async () => {
    const { last } = renderForm({ value: { inline: { host: "a" } } });
    const choose = within(screen.getByRole("group", { name: /Target/ })).getByLabelText("Choose one") as HTMLSelectElement;
    expect(choose.value).toBe("inline");
    await userEvent.selectOptions(choose, "upstream_id");
    expect("inline" in last()).toBe(false);
    await userEvent.type(field("upstream_id"), "orders");
    expect(last().upstream_id).toBe("orders");
  });

  it("renders every input disabled and no add/remove buttons when read only", () => {
    renderForm({ value: { id: "x", tags: ["a"] }, readOnly: true });
    expect((screen.getByLabelText(/^Id/) as HTMLInputElement).disabled).toBe(true);
    expect(screen.queryByRole("button", { name: /Add|Remove|Set/ })).toBeNull();
  });

  it("renders a field added to the metadata with no other code", () => {
    const meta = structuredClone(fixture);
    meta.messages["test.Inner"]!.fields.push({
      name: "max_fails",
      jsonName: "maxFails",
      number: 3,
      label: "single",
      kind: "scalar",
      scalar: "uint32",
      comment: "Failures before the node is marked down.",
      rules: {},
    });
    renderForm({ meta, type: "test.Inner" });
    expect(screen.getByLabelText(/^Max fails/)).toBeTruthy();
    expect(screen.getByText("Failures before the node is marked down.")).toBeTruthy();
  });
});

describe("form generator: the real schema", () => {
  it("renders every resource kind of the config without error", () => {
    for (const f of schema.messages[schema.root]!.fields) {
      const { unmount } = renderForm({ meta: schema, type: f.message! });
      unmount();
    }
  });

  it("shows the schema's rule messages from clients/ts validate.ts on the field they name", async () => {
    const value = { id: "orders", nodes: [{ host: "127.0.0.1", port: 70000 }] };
    const errors = validateValue("pingora_config.v1.Upstream", value);
    expect(Object.keys(errors)).toEqual(["nodes[0].port"]);
    renderForm({ meta: schema, type: "pingora_config.v1.Upstream", value, errors });
    const port = row("nodes[0].port");
    expect(within(port).getByRole("alert").textContent).toBe("must be <= 65535, is 70000 [lte]");
    expect(field("nodes[0].port").getAttribute("aria-invalid")).toBe("true");
    // The summary on top links to the field.
    expect(screen.getByRole("link", { name: "nodes[0].port" }).getAttribute("href")).toBe(`#${domId("nodes[0].port")}`);
  });

  it("reports a missing required list and a malformed id", () => {
    const errors = validateValue("pingora_config.v1.Upstream", { id: "bad id!" });
    expect(errors["id"]?.[0]).toMatch(/not a valid ID \[format\]$/);
    expect(errors["nodes"]?.[0]).toMatch(/\[min_items\]$/);
  });

  it("places the gateway's violations (ValidateConfigResponse details) on the field, without the collection prefix", () => {
    const err = new ConnectError("upstreams[2].nodes[0].host: ... [format]", Code.InvalidArgument, undefined, [
      {
        desc: ValidateConfigResponseSchema,
        value: create(ValidateConfigResponseSchema, {
          violations: [{ path: "upstreams[2].nodes[0].host", rule: "format", message: "`bad host` is not a valid HOST" }],
        }),
      },
    ]);
    const errors = errorMap(serverViolations(err, "upstreams"));
    renderForm({ meta: schema, type: "pingora_config.v1.Upstream", value: { id: "u", nodes: [{ host: "bad host", port: 80 }] }, errors });
    expect(within(row("nodes[0].host")).getByRole("alert").textContent).toBe("`bad host` is not a valid HOST [format]");
  });

  it("reads google.rpc.BadRequest field violations when that is all the error carries", () => {
    const violation = new BinaryWriter().uint32(10).string("routes[0].upstream_id").uint32(18).string("upstream `nope` does not exist [ref]").finish();
    const bytes = new BinaryWriter().uint32(10).bytes(violation).finish();
    const err = new ConnectError("rejected", Code.FailedPrecondition);
    err.details.push({ type: "google.rpc.BadRequest", value: bytes });
    const v = serverViolations(err, "routes");
    expect(v).toEqual([{ path: "upstream_id", rule: "ref", message: "upstream `nope` does not exist" }]);
    renderForm({ meta: schema, type: "pingora_config.v1.Route", value: { id: "r", uris: ["/"], upstream_id: "nope" }, errors: errorMap(v) });
    expect(within(row("upstream_id")).getByRole("alert").textContent).toBe("upstream `nope` does not exist [ref]");
  });

  it("moves focus to a field from the error summary, opening its section", () => {
    const value = { id: "u", nodes: [{ host: "h", port: 0 }] };
    renderForm({ meta: schema, type: "pingora_config.v1.Upstream", value, errors: { "nodes[0].port": ["required"] } });
    const details = row("nodes[0]") as HTMLDetailsElement;
    details.open = false;
    fireEvent.click(screen.getByRole("link", { name: "nodes[0].port" }));
    expect(details.open).toBe(true);
    expect(document.activeElement).toBe(field("nodes[0].port"));
  });
});
