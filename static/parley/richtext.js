// A message body as the server rendered it (`html`: a Markdown subset, sanitized with nh3's
// allow-list in messaging/formatting.py). The page never builds HTML from what people typed;
// it shows the server's HTML, and checks it again on the way in against the same allow-list:
// the HTML is parsed into an inert document (no script runs, nothing loads), and only allowed
// elements and attributes are copied over, as new nodes. Anything else is dropped, its text
// kept as text. A bug or a compromise on the server still can't put a handler on this page.

const ALLOWED = new Set(["p", "br", "em", "strong", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a", "span"]);
const LINK_SCHEMES = new Set(["http:", "https:", "mailto:"]);
// Elements whose content is not text a person wrote: dropped with everything in them.
const DROPPED = new Set(["script", "style", "template", "iframe", "object", "embed", "noscript", "svg", "math"]);

function safeLink(href) {
  try {
    const url = new URL(href, window.location.origin);
    return LINK_SCHEMES.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function copyElement(source, meId) {
  const tag = source.localName;
  const node = document.createElement(tag);
  if (tag === "a") {
    const href = safeLink(source.getAttribute("href") || "");
    if (!href) return null; // a link to nowhere safe: its text stays, as text
    node.href = href;
    node.target = "_blank";
    node.rel = "noopener noreferrer nofollow";
  } else if (tag === "ol") {
    const start = Number.parseInt(source.getAttribute("start") || "", 10);
    if (Number.isInteger(start) && start > 0) node.start = start;
  } else if (tag === "span" && source.classList.contains("mention")) {
    node.className = "mention";
    const user = source.getAttribute("data-user");
    if (user !== null && /^\d{1,18}$/.test(user)) node.dataset.user = user;
    // @all (no user) mentions me too.
    if (user === null || Number(user) === meId) node.classList.add("mention-me");
  }
  return node;
}

function copyChildren(from, to, meId) {
  for (const child of from.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) {
      to.append(document.createTextNode(child.data));
      continue;
    }
    if (child.nodeType !== Node.ELEMENT_NODE || DROPPED.has(child.localName)) continue;
    const copy = ALLOWED.has(child.localName) ? copyElement(child, meId) : null;
    copyChildren(child, copy || to, meId);
    if (copy) to.append(copy);
  }
}

/** A fragment of new nodes for the server's `html`; `meId` marks mentions of the reader. */
export function richText(html, meId) {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  const fragment = document.createDocumentFragment();
  copyChildren(parsed.body, fragment, meId);
  return fragment;
}
