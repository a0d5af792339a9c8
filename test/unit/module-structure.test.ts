/**
 * The shape of src/: imports go one way. No file imports itself through
 * others, no top-level folder imports itself through others, and each folder
 * imports only folders of the layers below its own (LAYERS). `import type`
 * counts too: the rule is about how the modules depend on each other, not
 * about what survives compilation. And no file is longer than MAX_LINES.
 *
 * The graph is built with the TypeScript compiler's own parser and module
 * resolution, so every kind of import is seen: import and export
 * declarations, `import type`, `import('…')` types and dynamic imports.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SRC = path.join(ROOT, 'src');

/**
 * The top-level folders of src/, highest first: a folder may import the
 * folders of the layers after its own, never one of its own layer or above.
 * '.' is the files directly in src/ (index.ts, the library's entry).
 */
const LAYERS: readonly (readonly string[])[] = [
  ['.'],
  ['cli'],
  ['server'],
  // What the server runs beside the engine: the journal (an engine observer), the installer, embedded PostgreSQL.
  ['journal', 'install', 'embedded'],
  ['engine'],
  ['workers', 'sql'],
  ['util'],
  // What the PostgreSQL protocol carries, as pgbg speaks it: SQLSTATE errors, DataRow bytes, row fields, the progress notice.
  ['protocol'],
];

const MAX_LINES = 450;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(p));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

const options: ts.CompilerOptions = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext };

/** The module specifiers a file names, whatever the kind of import. */
function specifiers(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      out.push(node.moduleReference.expression.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push(node.argument.literal.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      out.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/** src-relative path → the src files it imports (src-relative). */
function importGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of sourceFiles(SRC)) {
    const targets = new Set<string>();
    for (const spec of specifiers(file)) {
      const resolved = ts.resolveModuleName(spec, file, options, ts.sys).resolvedModule;
      if (!resolved || resolved.isExternalLibraryImport) continue;
      const target = path.relative(SRC, resolved.resolvedFileName);
      if (!target.startsWith('..') && !target.endsWith('.d.ts')) targets.add(target);
    }
    graph.set(path.relative(SRC, file), targets);
  }
  return graph;
}

function folderOf(file: string): string {
  const parts = file.split(path.sep);
  return parts.length > 1 ? parts[0]! : '.';
}

interface Cycle {
  /** A path that starts and ends on the same node. */
  path: string[];
  /** Every node of its strongly connected component: all that import each other, directly or not. */
  members: string[];
}

/**
 * The cycles of a graph: one per strongly connected component of more than
 * one node (or a node importing itself), with a shortest cycle through it
 * (Tarjan's algorithm, then a search inside the component).
 */
function cycles(graph: Map<string, Set<string>>): Cycle[] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const strongConnect = (v: string): void => {
    indices.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        strongConnect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, indices.get(w)!));
      }
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)?.has(v)) components.push(component);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!indices.has(v)) strongConnect(v);
  return components.map((component) => ({ path: cycleThrough(graph, new Set(component)), members: component.sort() }));
}

/** A shortest path from the component's first node (in sorted order) back to itself, inside the component. */
function cycleThrough(graph: Map<string, Set<string>>, component: Set<string>): string[] {
  const start = [...component].sort()[0]!;
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!component.has(w)) continue;
      if (w === start) {
        const between: string[] = [];
        for (let u = v; u !== start; u = previous.get(u)!) between.unshift(u);
        return [start, ...between, start];
      }
      if (!previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return [...component];
}

/** Folder → folders it imports, and for each such edge the file imports that make it. */
function folderGraph(files: Map<string, Set<string>>): { graph: Map<string, Set<string>>; because: Map<string, string[]> } {
  const graph = new Map<string, Set<string>>();
  const because = new Map<string, string[]>();
  for (const [file, targets] of files) {
    const from = folderOf(file);
    if (!graph.has(from)) graph.set(from, new Set());
    for (const target of targets) {
      const to = folderOf(target);
      if (to === from) continue;
      graph.get(from)!.add(to);
      const edge = `${from} → ${to}`;
      because.set(edge, [...(because.get(edge) ?? []), `${file} imports ${target}`]);
    }
  }
  return { graph, because };
}

const show = (cycle: Cycle) => cycle.path.join(' → ');
const firstOf = (imports: string[]) => imports[0]! + (imports.length > 1 ? ` (and ${imports.length - 1} more)` : '');

describe('module structure of src/', () => {
  const files = importGraph();
  const { graph: folders, because } = folderGraph(files);

  test('the graph is the real one (a sanity check of the parser and the resolution)', () => {
    assert.ok(files.size > 20, `${files.size} files`);
    assert.ok(files.get('index.ts')?.has(path.join('engine', 'engine.ts')), 'index.ts imports engine/engine.ts');
  });

  test('no cycle between files', () => {
    const found = cycles(files);
    const explain = (cycle: Cycle) => `${show(cycle)}\n    (all of ${cycle.members.join(', ')} import each other)`;
    assert.deepEqual(found.map(show), [], `import cycles between files:\n  ${found.map(explain).join('\n  ')}`);
  });

  test('no cycle between top-level folders', () => {
    const found = cycles(folders);
    const explain = (cycle: Cycle) =>
      `${show(cycle)} (all of ${cycle.members.join(', ')} import each other)\n    ` +
      cycle.path.slice(1).map((to, i) => firstOf(because.get(`${cycle.path[i]} → ${to}`)!)).join('\n    ');
    assert.deepEqual(found.map(show), [], `import cycles between folders:\n  ${found.map(explain).join('\n  ')}`);
  });

  test('each folder imports only folders of the layers below its own', () => {
    const layer = new Map(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));
    const unplaced = [...folders.keys()].filter((f) => !layer.has(f));
    assert.deepEqual(unplaced, [], `folders missing from LAYERS in ${path.relative(ROOT, import.meta.filename)}: ${unplaced.join(', ')}`);
    const gone = [...layer.keys()].filter((f) => !folders.has(f));
    assert.deepEqual(gone, [], `LAYERS names folders src/ no longer has: ${gone.join(', ')}`);
    const upward: string[] = [];
    for (const [from, targets] of folders) {
      for (const to of targets) {
        if (layer.get(to)! <= layer.get(from)!) upward.push(`${from} → ${to}:\n    ${because.get(`${from} → ${to}`)!.join('\n    ')}`);
      }
    }
    assert.deepEqual(upward, [], `imports against the layers (${LAYERS.map((l) => l.join(', ')).join(' → ')}):\n  ${upward.join('\n  ')}`);
  });

  test(`no file is longer than ${MAX_LINES} lines`, () => {
    const long = sourceFiles(SRC)
      .map((file) => ({ file: path.relative(ROOT, file), lines: readFileSync(file, 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > MAX_LINES)
      .map((f) => `${f.file}: ${f.lines} lines`);
    assert.deepEqual(long, [], `split these by concept:\n  ${long.join('\n  ')}`);
  });
});
