import { FieldError } from "./field-error.js";
import { CONTROL, checkWellFormed } from "./characters.js";

/** The event type of a click that names none: every click was one before clicks had types. */
export const DEFAULT_EVENT_TYPE = "view";

export const PROPERTY_LIMITS = { count: 16, nameChars: 64, textChars: 256 } as const;

/** A token: letters, digits and `_ - . :`, as event names of the reference systems ("add_to_cart", "AddToCart"). */
const EVENT_TYPE = /^[A-Za-z0-9_.:-]{1,32}$/;
const PROPERTY_NAME = new RegExp(`^[A-Za-z0-9_.:-]{1,${PROPERTY_LIMITS.nameChars}}$`);

/** The event type as stored: DEFAULT_EVENT_TYPE for an empty one; throws FieldError for anything but a token of 1..32 characters. */
export function checkEventType(value: string, field = "event"): string {
  if (value === "") return DEFAULT_EVENT_TYPE;
  if (!EVENT_TYPE.test(value)) throw new FieldError(field, "must be 1 to 32 letters, digits, '_', '-', '.' or ':' (no spaces or control characters)");
  return value;
}

/** A property value as the wire has it: a text, a number, or (a client's mistake) neither. */
export type PropertyInput = { case: "text"; value: string } | { case: "number"; value: number } | { case: undefined; value?: undefined };

export type PropertyValue = string | number;

/** The properties of a click, checked: at most 16, names tokens of at most 64 characters, texts of at most 256, numbers finite. */
export function checkProperties(properties: Record<string, PropertyInput>, field = "properties"): Record<string, PropertyValue> {
  const names = Object.keys(properties);
  if (names.length > PROPERTY_LIMITS.count) throw new FieldError(field, `at most ${PROPERTY_LIMITS.count} properties, not ${names.length}`);
  const out: Record<string, PropertyValue> = {};
  for (const name of names.sort()) {
    // A plain object's `__proto__` is its prototype, not a key: such a property was accepted and then vanished.
    if (!PROPERTY_NAME.test(name) || name === "__proto__")
      throw new FieldError(
        `${field}.${name.slice(0, PROPERTY_LIMITS.nameChars)}`,
        `a name must be 1 to ${PROPERTY_LIMITS.nameChars} letters, digits, '_', '-', '.' or ':'`,
      );
    const v = properties[name]!;
    if (v.case === "text") {
      checkWellFormed(v.value, `${field}.${name}`);
      if ([...v.value].length > PROPERTY_LIMITS.textChars) throw new FieldError(`${field}.${name}`, `must be at most ${PROPERTY_LIMITS.textChars} characters`);
      if (CONTROL.test(v.value)) throw new FieldError(`${field}.${name}`, "must not contain control characters");
      out[name] = v.value;
    } else if (v.case === "number") {
      if (!Number.isFinite(v.value)) throw new FieldError(`${field}.${name}`, "must be a finite number");
      out[name] = v.value;
    } else throw new FieldError(`${field}.${name}`, "must be a text or a number");
  }
  return out;
}

/** Which event types count as visits (for co-visits and interests): `VISIT_EVENTS` as a list of types; empty: every type. */
export function visitFilter(spec: string): (event: string) => boolean {
  const types = spec
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      try {
        return checkEventType(t, "VISIT_EVENTS");
      } catch (err) {
        throw new Error(`VISIT_EVENTS: "${t}" is not an event type: ${(err as FieldError).reason}`);
      }
    });
  if (types.length === 0) return () => true;
  const set = new Set(types);
  return (event) => set.has(event);
}
