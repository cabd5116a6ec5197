// The whole program, as a function: index.ts runs it under `pulumi up`, automation.ts through the Automation API, so
// what the test deploys is what a user's `pulumi up` deploys.
import * as pulumi from "@pulumi/pulumi";
import * as wgmesh from "@pulumi/wgmesh";

/** The mesh of the stack config's peers; its outputs are the stack's. */
export function meshProgram() {
    const config = new pulumi.Config();
    const mesh = new wgmesh.Mesh("mesh", {
        network: config.get("network"),
        peers: config.requireObject<wgmesh.types.input.PeerArgs[]>("peers"),
        sshPrivateKey: config.requireSecret("sshPrivateKey"),
    });
    return {
        publicKeys: mesh.publicKeys,
        endpoints: mesh.endpoints,
        tunnelAddresses: mesh.tunnelAddresses,
        verification: mesh.verification,
    };
}
