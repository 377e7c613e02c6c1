// The model every widget gets: anywidget's own AnyModel / RenderProps types (npm @anywidget/types),
// typed by each widget's traits, and one way to listen to trait changes.
import type { AnyModel, RenderProps } from "@anywidget/types";

export type { AnyModel, RenderProps };

/** Call `cb` on a change of any of `names`; returns the function that stops listening. */
export function onChange<T extends Record<string, unknown>>(model: AnyModel<T>, names: readonly (keyof T & string)[],
                                                            cb: () => void): () => void {
  for (const n of names) model.on(`change:${n}`, cb);
  return () => {
    for (const n of names) model.off(`change:${n}`, cb);
  };
}

/** Run every cleanup function (a view's dispose). */
export function disposeAll(...fns: (() => void)[]): () => void {
  return () => {
    for (const f of fns) f();
  };
}
