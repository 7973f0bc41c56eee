// Renders /api/openapi.json: one section per operation with its roles, parameters, body and
// responses. Built with DOM calls only (no innerHTML of document text, no inline script).
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function schemaText(schema) {
  return JSON.stringify(schema, null, 2);
}

function renderOperation(doc, path, method, op) {
  const id = op.operationId;
  const section = el("section", { class: "op", id },
    el("h2", {}, el("span", { class: "method" }, method.toUpperCase()), el("code", {}, path)),
    el("p", {}, op.summary || ""),
    el("p", { class: "roles" }, op["x-roles"].length ? `Bearer JWT, roles: ${op["x-roles"].join(", ")}` : "No token needed"));
  if (op.parameters && op.parameters.length) {
    const rows = op.parameters.map((p) => el("tr", {},
      el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, p.required ? "yes" : "no"),
      el("td", {}, el("code", {}, schemaText(p.schema)))));
    section.append(el("h3", {}, "Parameters"),
      el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "required"), el("th", {}, "schema")), ...rows));
  }
  if (op.requestBody) {
    for (const [type, media] of Object.entries(op.requestBody.content)) {
      const ref = media.schema.$ref;
      const schema = ref ? doc.components.schemas[ref.split("/").pop()] : media.schema;
      section.append(el("h3", {}, `Body (${type})`), el("pre", {}, schemaText(schema)));
    }
  }
  const rows = Object.entries(op.responses).map(([status, r]) => el("tr", {},
    el("td", {}, status), el("td", {}, r.description)));
  section.append(el("h3", {}, "Responses"),
    el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning or error codes")), ...rows));
  return section;
}

async function main() {
  const ops = document.getElementById("ops");
  const toc = document.getElementById("toc");
  const response = await fetch("/api/openapi.json");
  const doc = await response.json();
  ops.replaceChildren();
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      ops.append(renderOperation(doc, path, method, op));
      toc.append(el("a", { href: `#${op.operationId}` }, `${method.toUpperCase()} ${path}`));
    }
  }
  ops.append(el("h2", {}, "Schemas"));
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    ops.append(el("h3", { id: `schema-${name}` }, name), el("pre", {}, schemaText(schema)));
  }
}

main().catch((err) => {
  document.getElementById("ops").textContent = `Could not load the document: ${err}`;
});
