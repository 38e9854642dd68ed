// Message search (GET /api/v1/search): the switcher's "Messages" results. A result's
// `highlight` is HTML made on the server (escaped text, <mark> around the matches); it is
// still taken apart here and rebuilt from text nodes and <mark> elements only, so nothing
// else a server could send would ever become markup on the page.
import { api } from "./api.js";
import { shortWhen } from "./dates.js";
import { el } from "./ui.js";

// Below this many characters the switcher only filters conversations.
export const MIN_QUERY = 2;
export const RESULTS_AT_MOST = 20;

/** The newest messages matching `text` in my conversations: {results, has_more}. */
export function searchMessages(text, { before, limit = RESULTS_AT_MOST } = {}) {
  return api.get("search", { q: text, before, limit });
}

/** The highlight as nodes: its text, with <mark> kept and every other element dropped. */
export function highlightNodes(html) {
  const parsed = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html");
  const nodes = [];
  for (const node of parsed.body.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) nodes.push(document.createTextNode(node.textContent));
    else if (node.nodeName === "MARK") nodes.push(el("mark", { text: node.textContent }));
    else nodes.push(document.createTextNode(node.textContent || ""));
  }
  return nodes;
}

/** One result as the switcher shows it: where, who and when, then the matching words. */
export function resultContent(result, conversationTitle) {
  const { message } = result;
  const snippet = el("span", { cls: "search-snippet" });
  snippet.append(...highlightNodes(result.highlight));
  return [
    el("span", { cls: "search-where" },
      el("span", { cls: "search-conversation", text: conversationTitle }),
      el("span", { cls: "search-meta", text: ` · ${message.sender.display_name} · ${shortWhen(message.created_at)}` })),
    snippet,
  ];
}
