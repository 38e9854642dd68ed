// The theme chosen in Settings for this browser ("light" or "dark"; nothing follows the
// system), applied before the first paint. A classic script in <head>, not a module, so it
// runs before the page is drawn: a dark theme never flashes light.
(function applyTheme() {
  try {
    var theme = localStorage.getItem("parley:theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (error) {
    // Storage blocked: the system's theme it is.
  }
})();
