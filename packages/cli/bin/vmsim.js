#!/usr/bin/env node
// The `vmsim` command: a committed shim, so npm links it at install time, before the build
// has produced dist/ (a bin pointing into dist/ would not be linked by a fresh `npm ci`).
import '../dist/main.js';
