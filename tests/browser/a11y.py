"""axe-core in the browser tests (issue 14, item 4): a page or one part of it must have no
serious or critical violation. axe is vendored (vendor/axe-core, from npm) and injected by
the test; Parley's pages never load it. Pages with Parley's Content-Security-Policy need a
context opened with ``bypass_csp=True`` for the injection."""
from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = ("serious", "critical")

RUN = """async ([selector, impacts]) => {
  const scope = selector ? document.querySelector(selector) : document;
  const result = await axe.run(scope, { resultTypes: ["violations"] });
  return result.violations.filter((v) => impacts.includes(v.impact)).map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => `${n.target.join(" ")}: ${n.failureSummary.replace(/\\s+/g, " ")}`),
  }));
}"""


def violations(page: Page, selector: str | None = None) -> list[dict]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(RUN, [selector, list(FAILING_IMPACTS)])


def assert_accessible(page: Page, screen: str, selector: str | None = None) -> None:
    found = violations(page, selector)
    report = "\n".join(f"  {v['impact']} {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in found)
    assert not found, f"axe-core on {screen}:\n{report}"
