// Run a module on 32-bit MicroPython: the WebAssembly port (wasm32: 4-byte pointers and
// 16-byte GC blocks, as on an ESP32), npm @micropython/micropython-webassembly-pyscript
// 1.27.0 under Node. `sh tools/setup/ensure-mp32.sh` installs it (npm ci, from the lock).
//
//   node tools/mp32/run.mjs [options] <tree>[:<tree>...] <module> [arg ...]
//
// Each <tree> (a host directory, e.g. build/mpy with protocol/ and firmware/ as .mpy and a
// compiled script) is copied into the wasm in-memory FS at /app; sys.path is
// ['/app', '.frozen'] and sys.argv is [<module>, arg ...]; then `import <module>` runs.
// Python's stdout goes to this process's stdout as it comes (line by line), its stderr and
// any traceback to stderr.
//
// Options:
//   --timeout=S      stop after S seconds (default 120): exit 124
//   --heap=N[K|M]    the first GC heap area (default 64K); this build adds areas on demand,
//                    so the heap size caps nothing: measure gc.mem_alloc() instead
//   --mkdir=PATH     make PATH in the wasm FS first (repeatable), e.g. a node's flash
//   --report-alloc   after the import (and after --steps) collect and print
//                    "MP32_ALLOC <phase> <bytes>" on stdout: gc.mem_alloc() with only live
//                    objects left (phase: import, steps)
//   --steps=EXPR     after the import, evaluate the Python expression EXPR in the module's
//                    namespace; it must give a generator, which is then resumed from JS one
//                    `yield` at a time until it ends
//
// Why --steps: in this build (MICROPY_GC_SPLIT_HEAP_AUTO) gc.collect() and the gc.threshold
// trigger only mark a collection as pending; it runs when control is back in JS at the top
// level (the wasm C stack cannot be scanned). A long synchronous call therefore never frees
// anything and gc.mem_alloc() inside it only grows. A loop written as a generator,
// resumed from here and calling gc.collect() before each yield gets a collection between
// its steps (without that call, only when the threshold made one due), so its
// gc.mem_alloc() readings are live data plus that step's garbage (an upper bound of what
// a device, which collects inside the step too, would show).
//
// Exit status: 0 done, 1 Python exception (or SystemExit's code), 2 usage, 3 runner error
// (package missing, tree unreadable), 124 timeout. One MicroPython instance per process: it
// runs in a worker thread so the timeout can stop it.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { fileURLToPath } from "node:url";
import fs from "node:fs";
import path from "node:path";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = "@micropython/micropython-webassembly-pyscript";
const USAGE = "usage: node tools/mp32/run.mjs [--timeout=S] [--heap=N[K|M]] [--mkdir=PATH]... " +
    "[--report-alloc] [--steps=EXPR] <tree>[:<tree>...] <module> [arg ...]";

function parseArgs(argv) {
    const o = { timeout: 120, heap: 64 * 1024, mkdirs: [], reportAlloc: false, steps: null };
    let i = 0;
    for (; i < argv.length && argv[i].startsWith("--"); i++) {
        const [k, v] = argv[i].includes("=") ? [argv[i].slice(0, argv[i].indexOf("=")),
            argv[i].slice(argv[i].indexOf("=") + 1)] : [argv[i], null];
        if (k === "--timeout" && v && Number(v) > 0) o.timeout = Number(v);
        else if (k === "--heap" && v && /^\d+[kKmM]?$/.test(v)) {
            const m = { k: 1024, m: 1024 * 1024 }[v.slice(-1).toLowerCase()] || 1;
            o.heap = parseInt(v, 10) * m;
        } else if (k === "--mkdir" && v && v.startsWith("/")) o.mkdirs.push(v);
        else if (k === "--report-alloc" && v === null) o.reportAlloc = true;
        else if (k === "--steps" && v) o.steps = v;
        else throw new Error("bad option " + argv[i]);
    }
    if (argv.length - i < 2) throw new Error("a tree and a module are needed");
    o.trees = argv[i].split(":").filter(Boolean);
    o.module = argv[i + 1];
    o.args = argv.slice(i + 2);
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(o.module)) throw new Error("bad module name " + o.module);
    return o;
}

// ---------------------------------------------------------------- main thread
async function main() {
    let opts;
    try {
        opts = parseArgs(process.argv.slice(2));
    } catch (e) {
        process.stderr.write(`mp32: ${e.message}\n${USAGE}\n`);
        process.exitCode = 2;
        return;
    }
    const worker = new Worker(fileURLToPath(import.meta.url), { workerData: opts });
    let finished = false;
    const timer = setTimeout(() => {
        if (finished) return;
        finished = true;
        process.stderr.write(`mp32: timeout after ${opts.timeout} s: stopped\n`);
        process.exitCode = 124;
        worker.terminate();
    }, opts.timeout * 1000);
    worker.on("message", (m) => {
        if (finished) return;
        if (m.t === "out") process.stdout.write(Buffer.from(m.b));
        else if (m.t === "err") process.stderr.write(Buffer.from(m.b));
        else if (m.t === "done") {
            finished = true;
            clearTimeout(timer);
            process.exitCode = m.rc;
            worker.terminate();
        }
    });
    worker.on("error", (e) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        process.stderr.write(`mp32: runner error: ${e && e.stack ? e.stack : e}\n`);
        process.exitCode = 3;
    });
    worker.on("exit", () => {
        if (!finished) {
            finished = true;
            clearTimeout(timer);
            process.stderr.write("mp32: the worker ended without a result\n");
            process.exitCode = 3;
        }
    });
}

// ---------------------------------------------------------------- worker
function byteSink(kind) {
    // Collects the bytes MicroPython writes and posts them a line at a time.
    let buf = [];
    const flush = () => {
        if (buf.length) {
            parentPort.postMessage({ t: kind, b: Uint8Array.from(buf) });
            buf = [];
        }
    };
    const put = (u8) => {
        for (const c of u8) {
            buf.push(c);
            if (c === 10 || buf.length >= 8192) flush();
        }
    };
    return { put, flush };
}

function copyTree(FS, src, dst) {
    for (const ent of fs.readdirSync(src, { withFileTypes: true })) {
        const s = path.join(src, ent.name);
        const d = dst + "/" + ent.name;
        if (ent.isDirectory()) {
            mkdirp(FS, d);
            copyTree(FS, s, d);
        } else if (ent.isFile()) {
            FS.writeFile(d, fs.readFileSync(s));
        }
    }
}

function mkdirp(FS, p) {
    let cur = "";
    for (const part of p.split("/").filter(Boolean)) {
        cur += "/" + part;
        try {
            FS.mkdir(cur);
        } catch (e) {
            if (!FS.analyzePath(cur).exists) throw e;
        }
    }
}

const pyStr = (s) => JSON.stringify(String(s));   // a JSON string is a valid Python literal

async function worker(opts) {
    const out = byteSink("out");
    const err = byteSink("err");
    const done = (rc) => {
        out.flush();
        err.flush();
        parentPort.postMessage({ t: "done", rc });
    };
    const entry = path.join(HERE, "node_modules", PKG, "micropython.mjs");
    if (!fs.existsSync(entry)) {
        err.put(Buffer.from(`mp32: ${PKG} is not installed in ${HERE}/node_modules: ` +
            "run `sh tools/setup/ensure-mp32.sh`\n"));
        return done(3);
    }
    for (const t of opts.trees) {
        if (!fs.statSync(t, { throwIfNoEntry: false })?.isDirectory()) {
            err.put(Buffer.from(`mp32: not a directory: ${t}\n`));
            return done(3);
        }
    }
    const { loadMicroPython } = await import(entry);
    const mp = await loadMicroPython({
        heapsize: opts.heap, linebuffer: false,
        stdout: (u8) => out.put(u8), stderr: (u8) => err.put(u8),
    });
    mkdirp(mp.FS, "/app");
    for (const t of opts.trees) copyTree(mp.FS, t, "/app");
    for (const d of opts.mkdirs) mkdirp(mp.FS, d);

    // Python exceptions reach JS as PythonError (.type, traceback in .message).
    const failed = (e) => {
        if (!e || e.name !== "PythonError") throw e;
        if (e.type === "SystemExit") {
            const m = /SystemExit: (-?\d+)\s*$/.exec(e.message);
            return m ? Number(m[1]) : (/SystemExit\s*$/.test(e.message) ? 0 : 1);
        }
        err.put(Buffer.from(e.message.endsWith("\n") ? e.message : e.message + "\n"));
        return 1;
    };
    let gc = null;
    const reportAlloc = (phase) => {
        // each call from JS ends at the top level, where a pending collection runs
        gc = gc || mp.pyimport("gc");
        gc.collect();
        gc.collect();
        out.put(Buffer.from(`MP32_ALLOC ${phase} ${gc.mem_alloc()}\n`));
    };
    try {
        mp.runPython("import sys\nsys.path[:] = ['/app', '.frozen']\nsys.argv[:] = [" +
            [opts.module, ...opts.args].map(pyStr).join(", ") + "]\n");
        mp.pyimport(opts.module);
    } catch (e) {
        return done(failed(e));
    }
    if (opts.reportAlloc) reportAlloc("import");
    if (opts.steps !== null) {
        try {
            mp.runPython("import sys\n_mp32_gen = eval(" + pyStr(opts.steps) + ", sys.modules[" +
                pyStr(opts.module) + "].__dict__)\n" +
                "def _mp32_step():\n" +
                "    try:\n        next(_mp32_gen)\n        return 1\n" +
                "    except StopIteration:\n        return 0\n");
            const step = mp.globals.get("_mp32_step");
            while (step()) { /* one generator step per call from JS */ }
            mp.runPython("_mp32_gen = None");
        } catch (e) {
            return done(failed(e));
        }
        if (opts.reportAlloc) reportAlloc("steps");
    }
    return done(0);
}

if (isMainThread) {
    await main();
} else {
    try {
        await worker(workerData);
    } catch (e) {
        parentPort.postMessage({ t: "err", b: Buffer.from(`mp32: runner error: ${e && e.stack ? e.stack : e}\n`) });
        parentPort.postMessage({ t: "done", rc: 3 });
    }
}
