import { Code, ConnectError } from "@connectrpc/connect";

/** A rejected input: which field, and why, in words a client can act on. */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
    /** InvalidArgument for a bad value; ResourceExhausted for a valid one over a limit. */
    readonly code: Code = Code.InvalidArgument,
  ) {
    super(`${field}: ${reason}`);
  }
  toConnectError(): ConnectError {
    return new ConnectError(this.message, this.code);
  }
}
