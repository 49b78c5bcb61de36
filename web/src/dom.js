// The only way this client builds DOM: elements from createElement, text from text
// nodes. User data never reaches an HTML parser (no innerHTML anywhere), so a message
// body is always shown as the characters it is.

/**
 * h("li", {class: "x", dataset: {id: 1}, onclick: fn}, "text", childNode)
 * Props: `class`, `dataset`, `on<event>` listeners, DOM properties that exist on the
 * element (value, disabled, type...), anything else as an attribute.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) el.dataset[name] = String(data);
    } else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof el[key] !== "function") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children, keeping focus where it was if that node stays. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}
