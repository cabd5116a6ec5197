// `pulumi up` runs this file: the stack's outputs are what meshProgram returns.
import { meshProgram } from "./program";

export = meshProgram();
