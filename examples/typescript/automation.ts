// meshProgram through the Automation API, as an inline program: this Node.js process serves it to the engine itself,
// so the Node.js language host (pulumi-language-nodejs) is not needed. tests/test_typescript_example.py deploys the
// example on the lab this way; it is also how to run the program where only the `pulumi` CLI is installed.
//
//   node bin/automation.js up|preview|destroy <work dir> <stack> [--expect-no-changes]
//
// <work dir> holds this project's Pulumi.yaml and the stack's config; the CLI (`pulumi` on PATH, never downloaded),
// the backend, the passphrase and PULUMI_HOME come from the environment, as for `pulumi` itself. Prints one JSON
// object: the stack's outputs (a secret one as "[secret]"), Pulumi's change counts, each resource's step (op, URN)
// and the engine's own text output; on failure, the error, and the exit code is 1.
import { EngineEvent, LocalWorkspace, OutputMap, PulumiCommand } from "@pulumi/pulumi/automation";
import { meshProgram } from "./program";

interface Step {
    op: string;
    urn: string;
}

interface Result {
    outputs: Record<string, unknown>;
    changes: Record<string, number>;
    steps: Step[];
    stdout: string;
}

/** Output values as JSON, a secret one masked: this process's stdout is a log that must never hold one. */
function plain(outputs: OutputMap): Record<string, unknown> {
    return Object.fromEntries(Object.entries(outputs).map(([key, output]) => [key, output.secret ? "[secret]" : output.value]));
}

async function run(operation: string, workDir: string, stackName: string, expectNoChanges: boolean): Promise<Result> {
    // The CLI on PATH: PulumiCommand.get never installs one, where the workspace's default might one day.
    const pulumiCommand = await PulumiCommand.get();
    const stack = await LocalWorkspace.createOrSelectStack(
        { stackName, projectName: "wgmesh-typescript", program: async () => meshProgram() },
        { workDir, pulumiCommand },
    );
    const steps: Step[] = [];
    const onEvent = (event: EngineEvent) => {
        const metadata = event.resourcePreEvent?.metadata;
        if (metadata && metadata.op !== "same") {
            steps.push({ op: metadata.op, urn: metadata.urn });
        }
    };
    switch (operation) {
        case "up": {
            const result = await stack.up({ onEvent, expectNoChanges });
            const changes = result.summary.resourceChanges ?? {};
            return { outputs: plain(result.outputs), changes, steps, stdout: result.stdout };
        }
        case "preview": {
            const result = await stack.preview({ onEvent, expectNoChanges });
            return { outputs: {}, changes: result.changeSummary, steps, stdout: result.stdout };
        }
        case "destroy": {
            const result = await stack.destroy({ onEvent });
            return { outputs: {}, changes: result.summary.resourceChanges ?? {}, steps, stdout: result.stdout };
        }
        default:
            throw new Error(`unknown operation ${operation}: up, preview or destroy`);
    }
}

async function main(argv: string[]): Promise<number> {
    const [operation, workDir, stackName, ...flags] = argv;
    if (!operation || !workDir || !stackName) {
        console.error("usage: automation.js up|preview|destroy <work dir> <stack> [--expect-no-changes]");
        return 2;
    }
    try {
        const result = await run(operation, workDir, stackName, flags.includes("--expect-no-changes"));
        console.log(JSON.stringify({ ok: true, ...result }));
        return 0;
    } catch (error) {
        console.log(JSON.stringify({ ok: false, error: error instanceof Error ? error.message : String(error) }));
        return 1;
    }
}

main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
});
