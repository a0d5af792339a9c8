/**
 * Preloaded into every test file's process (test/run.ts). A test file reports
 * its results to the runner through a pipe on stdout, and with
 * `--test-force-exit` it exits as soon as its last test ends: writes still
 * queued on the pipe were lost, and the run reported fewer tests than ran,
 * with no failure (about one run in twelve of classify.test.ts here; Node
 * issue #64833). Blocking writes are never queued.
 */
const stdout = process.stdout as unknown as { _handle?: { setBlocking?: (blocking: boolean) => unknown } };
stdout._handle?.setBlocking?.(true);
