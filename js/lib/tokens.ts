// How a token's text is shown in a label, a canvas cell or a text pane (the same in every widget).

/** C0 control characters and DEL as their Control Pictures (U+2400 + code; DEL U+2421), except
 * the characters in `keep`. */
export function controlPictures(text: string, keep = ""): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, (ch) =>
    keep.includes(ch) ? ch : String.fromCharCode(ch === "\u007f" ? 0x2421 : 0x2400 + ch.charCodeAt(0)));
}

/**
 * Whitespace and control characters made visible: "" as ∅, newline ↵, tab ⇥, carriage return
 * ␍, every other control as its Control Picture, and a token of spaces only as ␣s. Anything
 * else (markup, bidi controls, emoji) is left as it is: it is drawn on canvas or set as
 * textContent, never parsed.
 */
export function visibleToken(tok: string): string {
  if (tok === "") return "∅";
  const shown = controlPictures(tok.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/\r/g, "␍"));
  return shown.trim() === "" ? shown.replace(/ /g, "␣") : shown;
}
