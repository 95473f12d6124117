/**
 * vitest's JSON report plus `numExpectedFailTests`: the it.fails cases (expected failures, e.g. the
 * fuse-native limits listed in test/mount/frontends.ts) that failed as expected. vitest counts
 * them in numPassedTests; scripts/test takes this reporter (--reporter) to print them apart.
 */
import type { TestModule } from 'vitest/node';
import { JsonReporter } from 'vitest/reporters';

export default class JsonReporterWithExpectedFailures extends JsonReporter {
  private expectedFail = 0;

  override async onTestRunEnd(testModules: ReadonlyArray<TestModule>): Promise<void> {
    this.expectedFail = 0;
    for (const m of testModules) {
      for (const t of m.children.allTests()) if (t.options.fails && t.result().state === 'passed') this.expectedFail++;
    }
    await super.onTestRunEnd(testModules);
  }

  override async writeReport(report: string): Promise<void> {
    await super.writeReport(JSON.stringify({ ...JSON.parse(report), numExpectedFailTests: this.expectedFail }));
  }
}
