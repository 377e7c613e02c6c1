// The model every widget gets: anywidget's own AnyModel / RenderProps types (npm @anywidget/types),
// typed by each widget's traits, and one way to listen to trait changes.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { ensureWidgetStyle, redrawWhenAttached } from "./dom";

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

/** What viewWidget needs of a widget's view: one method that (re)draws everything. */
export interface Drawable {
  draw(): void;
}

/** A widget drawn by one view object: render() adds its CSS once (after the shared CSS), makes
 * the view, draws it now, again once `el` is attached (the theme's colours and fonts are only
 * read right then) and on any change of `data`, setting data-ms-ready after each draw.
 * `listen` adds further listeners (their cleanups) on the model. */
export function viewWidget<T extends Record<string, unknown>, V extends Drawable>(
  style: readonly [id: string, css: string],
  makeView: (model: AnyModel<T>, el: HTMLElement) => V,
  data: readonly (keyof T & string)[],
  listen: (model: AnyModel<T>, view: V) => (() => void)[] = () => [],
): { render(props: RenderProps<T>): () => void } {
  return {
    render({ model, el }: RenderProps<T>): () => void {
      ensureWidgetStyle(...style);
      const view = makeView(model, el);
      const draw = () => {
        view.draw();
        el.dataset.msReady = "1";
      };
      draw();
      return disposeAll(redrawWhenAttached(el, draw), onChange(model, data, draw), ...listen(model, view));
    },
  };
}
