/** Text for one-line places: a table cell, an Event message, a result's message. */

/** `text` on one line (runs of white space, newlines included, become one space), cut to `width` characters ending in "…". */
export function oneLine(text: string, width: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= width ? flat : `${flat.slice(0, Math.max(0, width - 1))}…`;
}
