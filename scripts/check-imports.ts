// Import-graph checks for the vmsim monorepo. Dependency-free; run with `node scripts/check-imports.ts`
// (Node 24 type stripping, so only erasable TypeScript syntax is used here).
//
// Scans every .ts file under packages/*/src and services/*/src (tests included) and fails when:
//   (a) relative imports form a cycle inside a package (type-only imports are ignored);
//   (b) a relative import resolves outside the importing file's own package directory;
//   (c) workspace packages depend on each other in a cycle (package.json `@vmsim/*` dependencies);
//   (d) a source file imports an `@vmsim/*` package that its package.json does not declare.
// Exit code 1 on any violation, otherwise one OK line.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const PACKAGE_GROUPS = ['packages', 'services'];
const SCOPE = '@vmsim/';

interface Pkg {
  /** Directory relative to ROOT, e.g. `services/guest`. */
  dir: string;
  /** Absolute directory. */
  absDir: string;
  /** package.json name, or the directory when there is no package.json. */
  name: string;
  /** Declared `@vmsim/*` dependencies (all dependency kinds). */
  workspaceDeps: string[];
  hasManifest: boolean;
}

type ImportKind = 'static' | 'type' | 'dynamic';

interface ImportRef {
  specifier: string;
  kind: ImportKind;
  line: number;
}

interface FileInfo {
  abs: string;
  pkg: Pkg;
  imports: ImportRef[];
}

const errors: string[] = [];
const warnings: string[] = [];

function rel(abs: string): string {
  return path.relative(ROOT, abs).split(path.sep).join('/');
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function readJson(p: string): unknown {
  return JSON.parse(readFileSync(p, 'utf8'));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Workspace discovery

function loadPackage(absDir: string): Pkg {
  const dir = rel(absDir);
  const manifestPath = path.join(absDir, 'package.json');
  if (!isFile(manifestPath)) {
    return { dir, absDir, name: dir, workspaceDeps: [], hasManifest: false };
  }
  let manifest: unknown;
  try {
    manifest = readJson(manifestPath);
  } catch (err) {
    errors.push(`${dir}/package.json: cannot parse: ${(err as Error).message}`);
    return { dir, absDir, name: dir, workspaceDeps: [], hasManifest: false };
  }
  const m = isRecord(manifest) ? manifest : {};
  const name = typeof m['name'] === 'string' ? m['name'] : dir;
  const deps = new Set<string>();
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
    const block = m[field];
    if (!isRecord(block)) continue;
    for (const dep of Object.keys(block)) {
      if (dep.startsWith(SCOPE)) deps.add(dep);
    }
  }
  return { dir, absDir, name, workspaceDeps: [...deps].sort(), hasManifest: true };
}

function discoverPackages(): Pkg[] {
  const dirs = new Set<string>();
  for (const group of PACKAGE_GROUPS) {
    const groupAbs = path.join(ROOT, group);
    if (!isDir(groupAbs)) continue;
    for (const entry of readdirSync(groupAbs, { withFileTypes: true })) {
      if (entry.isDirectory() && !entry.name.startsWith('.')) dirs.add(path.join(groupAbs, entry.name));
    }
  }
  // Workspaces declared in the root package.json (may live elsewhere or use simple `dir/*` globs).
  try {
    const rootManifest = readJson(path.join(ROOT, 'package.json'));
    const ws = isRecord(rootManifest) ? rootManifest['workspaces'] : undefined;
    const list = Array.isArray(ws) ? ws : isRecord(ws) && Array.isArray(ws['packages']) ? ws['packages'] : [];
    for (const entry of list) {
      if (typeof entry !== 'string') continue;
      if (entry.endsWith('/*')) {
        const parent = path.join(ROOT, entry.slice(0, -2));
        if (!isDir(parent)) continue;
        for (const child of readdirSync(parent, { withFileTypes: true })) {
          if (child.isDirectory()) dirs.add(path.join(parent, child.name));
        }
      } else if (!entry.includes('*')) {
        const abs = path.join(ROOT, entry);
        if (isDir(abs)) dirs.add(abs);
      }
    }
  } catch (err) {
    errors.push(`package.json: cannot read workspaces: ${(err as Error).message}`);
  }
  return [...dirs].sort().map(loadPackage);
}

// ---------------------------------------------------------------------------------------------
// Source scanning

function listTsFiles(dirAbs: string, out: string[]): void {
  for (const entry of readdirSync(dirAbs, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name === 'dist' || entry.name.startsWith('.')) continue;
    const abs = path.join(dirAbs, entry.name);
    if (entry.isDirectory()) {
      listTsFiles(abs, out);
    } else if (entry.isFile() && /\.(?:ts|mts|cts)$/.test(entry.name) && !/\.d\.(?:ts|mts|cts)$/.test(entry.name)) {
      out.push(abs);
    }
  }
}

const REGEX_PRECEDERS = new Set('(,=:[!&|?{};+-*%<>~^'.split(''));
const REGEX_KEYWORDS = new Set([
  'return',
  'typeof',
  'instanceof',
  'in',
  'of',
  'new',
  'delete',
  'void',
  'throw',
  'case',
  'do',
  'else',
  'yield',
  'await',
]);

/**
 * Replace comments with whitespace (newlines preserved so line numbers stay right).
 * Strings and template literals are kept verbatim. Regex literals are detected heuristically
 * so that `//` or quotes inside them do not derail the scanner.
 */
function stripComments(src: string): string {
  let out = '';
  let i = 0;
  const n = src.length;
  // Last significant (non-space, non-comment) token character and trailing identifier.
  let lastChar = '';
  let lastWord = '';
  // Stack of brace depths for template literal `${ ... }` nesting.
  const templateStack: number[] = [];
  let braceDepth = 0;

  const blank = (s: string): string => s.replace(/[^\n]/g, ' ');

  const readQuoted = (quote: string): void => {
    const start = i;
    i++;
    while (i < n) {
      const c = src[i];
      if (c === '\\') {
        i += 2;
        continue;
      }
      i++;
      if (c === quote || c === '\n') break;
    }
    out += src.slice(start, i);
  };

  // Reads template text starting at i (just after ` or }) up to the closing ` or a `${`.
  const readTemplateChunk = (): void => {
    const start = i;
    while (i < n) {
      const c = src[i];
      if (c === '\\') {
        i += 2;
        continue;
      }
      if (c === '`') {
        i++;
        out += src.slice(start, i);
        lastChar = '`';
        lastWord = '';
        return;
      }
      if (c === '$' && src[i + 1] === '{') {
        i += 2;
        out += src.slice(start, i);
        templateStack.push(braceDepth);
        braceDepth++;
        lastChar = '{';
        lastWord = '';
        return;
      }
      i++;
    }
    out += src.slice(start, i);
  };

  while (i < n) {
    const c = src[i] as string;
    const next = src[i + 1];
    if (c === '/' && next === '/') {
      const end = src.indexOf('\n', i);
      const stop = end === -1 ? n : end;
      out += blank(src.slice(i, stop));
      i = stop;
      continue;
    }
    if (c === '/' && next === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end === -1 ? n : end + 2;
      out += blank(src.slice(i, stop));
      i = stop;
      continue;
    }
    if (c === '"' || c === "'") {
      readQuoted(c);
      lastChar = c;
      lastWord = '';
      continue;
    }
    if (c === '`') {
      i++;
      out += '`';
      readTemplateChunk();
      continue;
    }
    if (c === '/' && (lastChar === '' || REGEX_PRECEDERS.has(lastChar) || REGEX_KEYWORDS.has(lastWord))) {
      // Regex literal.
      const start = i;
      i++;
      let inClass = false;
      while (i < n) {
        const ch = src[i];
        if (ch === '\\') {
          i += 2;
          continue;
        }
        i++;
        if (ch === '\n') break;
        if (inClass) {
          if (ch === ']') inClass = false;
        } else if (ch === '[') {
          inClass = true;
        } else if (ch === '/') {
          break;
        }
      }
      while (i < n && /[a-z]/i.test(src[i] as string)) i++;
      out += src.slice(start, i);
      lastChar = '/';
      lastWord = '';
      continue;
    }
    if (c === '{') {
      braceDepth++;
    } else if (c === '}') {
      braceDepth--;
      if (templateStack.length > 0 && templateStack[templateStack.length - 1] === braceDepth) {
        templateStack.pop();
        i++;
        out += '}';
        readTemplateChunk();
        continue;
      }
    }
    out += c;
    i++;
    if (/\s/.test(c)) continue;
    if (/[\w$]/.test(c)) {
      lastWord = /[\w$]/.test(lastChar) ? lastWord + c : c;
    } else {
      lastWord = '';
    }
    lastChar = c;
  }
  return out;
}

function lineAt(src: string, index: number): number {
  let line = 1;
  for (let k = 0; k < index; k++) if (src.charCodeAt(k) === 10) line++;
  return line;
}

// `import ... from 'x'`, `import type ... from 'x'`, `export ... from 'x'`, `export type ... from 'x'`.
const FROM_RE = /(?:^|[;}\n])\s*(import|export)\s+(type\s+)?([^'"`;]*?)\bfrom\s*(['"])([^'"\n]+)\4/g;
// Side-effect imports: `import 'x'`.
const BARE_RE = /(?:^|[;}\n])\s*import\s*(['"])([^'"\n]+)\1/g;
// Dynamic imports: `import('x')` with a literal specifier.
const DYNAMIC_RE = /(?<![\w$.])import\s*\(\s*(['"])([^'"\n]+)\1\s*[,)]/g;

function parseImports(source: string): ImportRef[] {
  const src = stripComments(source);
  const refs: ImportRef[] = [];
  for (const m of src.matchAll(FROM_RE)) {
    const typeOnly = m[2] !== undefined;
    const clause = (m[3] ?? '').trim();
    // `import type from './x'` is a default import named `type`, not a type-only import.
    // `import { type A }` is NOT type-only either: verbatimModuleSyntax keeps it as `import {} from`.
    const isTypeDecl = typeOnly && clause !== '';
    const specifier = m[5] ?? '';
    refs.push({
      specifier,
      kind: isTypeDecl ? 'type' : 'static',
      line: lineAt(src, (m.index ?? 0) + m[0].indexOf(m[1] ?? '')),
    });
  }
  for (const m of src.matchAll(BARE_RE)) {
    refs.push({ specifier: m[2] ?? '', kind: 'static', line: lineAt(src, (m.index ?? 0) + m[0].indexOf('import')) });
  }
  for (const m of src.matchAll(DYNAMIC_RE)) {
    refs.push({ specifier: m[2] ?? '', kind: 'dynamic', line: lineAt(src, m.index ?? 0) });
  }
  return refs;
}

/** Resolve a relative specifier to an existing file when possible; otherwise return the raw target path. */
function resolveRelative(fromAbs: string, specifier: string): { target: string; exists: boolean } {
  const raw = path.resolve(path.dirname(fromAbs), specifier);
  const candidates = [raw];
  const ext = path.extname(raw);
  const stem = raw.slice(0, raw.length - ext.length);
  if (ext === '.js') candidates.push(`${stem}.ts`);
  else if (ext === '.mjs') candidates.push(`${stem}.mts`);
  else if (ext === '.cjs') candidates.push(`${stem}.cts`);
  else if (ext !== '.ts' && ext !== '.mts' && ext !== '.cts') candidates.push(`${raw}.ts`, path.join(raw, 'index.ts'));
  for (const c of candidates) {
    if (isFile(c)) return { target: c, exists: true };
  }
  return { target: raw, exists: false };
}

function isInside(childAbs: string, parentAbs: string): boolean {
  const r = path.relative(parentAbs, childAbs);
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
}

function packageNameOf(specifier: string): string | undefined {
  if (!specifier.startsWith(SCOPE)) return undefined;
  const parts = specifier.split('/');
  return parts.length >= 2 ? `${parts[0]}/${parts[1]}` : undefined;
}

// ---------------------------------------------------------------------------------------------
// Cycle detection (Tarjan SCC, then one concrete cycle per SCC)

function findCycles(nodes: string[], edges: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const sccs: string[][] = [];

  // Iterative Tarjan to stay safe on deep graphs.
  for (const start of nodes) {
    if (idx.has(start)) continue;
    const work: { node: string; next: number }[] = [{ node: start, next: 0 }];
    idx.set(start, index);
    low.set(start, index);
    index++;
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1] as { node: string; next: number };
      const succ = edges.get(frame.node) ?? [];
      if (frame.next < succ.length) {
        const w = succ[frame.next] as string;
        frame.next++;
        if (!idx.has(w)) {
          idx.set(w, index);
          low.set(w, index);
          index++;
          stack.push(w);
          onStack.add(w);
          work.push({ node: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.node, Math.min(low.get(frame.node) as number, idx.get(w) as number));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(frame.node) as number));
      if (low.get(frame.node) === idx.get(frame.node)) {
        const scc: string[] = [];
        let w: string | undefined;
        do {
          w = stack.pop() as string;
          onStack.delete(w);
          scc.push(w);
        } while (w !== frame.node);
        const selfLoop = (edges.get(frame.node) ?? []).includes(frame.node);
        if (scc.length > 1 || selfLoop) sccs.push(scc);
      }
    }
  }

  // Shortest cycle through the SCC's smallest node (BFS restricted to the SCC).
  return sccs.map((scc) => {
    const members = new Set(scc);
    const start = [...scc].sort()[0] as string;
    const prev = new Map<string, string>();
    const queue = [start];
    let found = false;
    for (let q = 0; q < queue.length && !found; q++) {
      const v = queue[q] as string;
      for (const w of edges.get(v) ?? []) {
        if (!members.has(w)) continue;
        if (w === start) {
          prev.set(start, v);
          found = true;
          break;
        }
        if (!prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    const cycle = [start];
    let cur = prev.get(start);
    while (cur !== undefined && cur !== start) {
      cycle.unshift(cur);
      cur = prev.get(cur);
    }
    cycle.unshift(start);
    return cycle;
  });
}

// ---------------------------------------------------------------------------------------------
// Main

const packages = discoverPackages();
const byName = new Map<string, Pkg>();
for (const pkg of packages) {
  const dup = byName.get(pkg.name);
  if (dup && pkg.hasManifest) errors.push(`duplicate package name ${pkg.name} in ${dup.dir} and ${pkg.dir}`);
  byName.set(pkg.name, pkg);
}

const files = new Map<string, FileInfo>();
for (const pkg of packages) {
  const srcAbs = path.join(pkg.absDir, 'src');
  if (!isDir(srcAbs)) continue;
  const list: string[] = [];
  listTsFiles(srcAbs, list);
  for (const abs of list) {
    let text: string;
    try {
      text = readFileSync(abs, 'utf8');
    } catch (err) {
      errors.push(`${rel(abs)}: cannot read: ${(err as Error).message}`);
      continue;
    }
    files.set(abs, { abs, pkg, imports: parseImports(text) });
  }
}

// Runtime edges between files, with import kind per edge for messages.
const fileEdges = new Map<string, string[]>();
for (const file of files.values()) {
  const out: string[] = [];
  for (const ref of file.imports) {
    const where = `${rel(file.abs)}:${ref.line}`;
    if (
      ref.specifier.startsWith('./') ||
      ref.specifier.startsWith('../') ||
      ref.specifier === '.' ||
      ref.specifier === '..'
    ) {
      const { target, exists } = resolveRelative(file.abs, ref.specifier);
      if (!isInside(target, file.pkg.absDir)) {
        const owner = packages.find((p) => isInside(target, p.absDir));
        const into = owner ? ` (inside ${owner.name})` : '';
        errors.push(
          `${where}: relative import '${ref.specifier}' leaves package ${file.pkg.name} -> ${rel(target)}${into}; import the package by name instead`,
        );
        continue;
      }
      if (!exists) {
        warnings.push(`${where}: cannot resolve relative import '${ref.specifier}'`);
        continue;
      }
      if (ref.kind === 'static' && files.has(target) && !out.includes(target)) out.push(target);
      continue;
    }
    const dep = packageNameOf(ref.specifier);
    if (dep === undefined) continue;
    if (dep === file.pkg.name) {
      errors.push(`${where}: package ${dep} imports itself by name ('${ref.specifier}'); use a relative import`);
    } else if (file.pkg.hasManifest && !file.pkg.workspaceDeps.includes(dep)) {
      errors.push(`${where}: imports '${ref.specifier}' but ${file.pkg.dir}/package.json does not declare ${dep}`);
    } else if (!byName.has(dep)) {
      warnings.push(`${where}: '${ref.specifier}' is not a workspace package`);
    }
  }
  fileEdges.set(file.abs, out);
}

// (a) file-level cycles, reported per package.
const fileCycles = findCycles([...fileEdges.keys()].sort(), fileEdges);
for (const cycle of fileCycles) {
  const first = files.get(cycle[0] as string);
  const pkgName = first ? first.pkg.name : '?';
  errors.push(
    `import cycle in ${pkgName}:\n      ${cycle.map(rel).join('\n   -> ')}\n    (break it by extracting shared code, or use \`import type\` if only types are needed)`,
  );
}

// (c) workspace package dependency cycles.
const pkgEdges = new Map<string, string[]>();
for (const pkg of packages) {
  if (!pkg.hasManifest) continue;
  pkgEdges.set(
    pkg.name,
    pkg.workspaceDeps.filter((d) => byName.has(d)),
  );
  for (const d of pkg.workspaceDeps) {
    if (!byName.has(d)) warnings.push(`${pkg.dir}/package.json: depends on ${d}, which is not a workspace package`);
  }
}
for (const cycle of findCycles([...pkgEdges.keys()].sort(), pkgEdges)) {
  errors.push(`workspace dependency cycle (package.json): ${cycle.join(' -> ')}`);
}

for (const w of warnings) console.warn(`check-imports: warning: ${w}`);
if (errors.length > 0) {
  for (const e of errors) console.error(`check-imports: error: ${e}`);
  console.error(`check-imports: FAILED with ${errors.length} violation(s) in ${files.size} files`);
  process.exit(1);
}
const pkgCount = packages.filter((p) => p.hasManifest).length;
console.log(`check-imports: OK (${files.size} files in ${pkgCount} packages, no cycles or boundary violations)`);
