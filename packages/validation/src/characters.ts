import { FieldError } from "./field-error.js";

// C0, DEL and C1: the characters Unicode calls control (Cc).
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is what it is for
export const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Invalid UTF-8 in a JSON body reaches us decoded, each bad byte turned into U+FFFD; a lone
 * surrogate is UTF-16 no UTF-8 can carry. Either means the client's text was not what it meant.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function checkWellFormed(value: string, field: string): void {
  if (value.includes("\uFFFD") || LONE_SURROGATE.test(value))
    throw new FieldError(field, "must be valid UTF-8 (it holds U+FFFD, the mark of bytes that were not, or a lone surrogate)");
}
