//! Live updates without a framework: an inline script (no CDN, nothing fetched but `/`
//! itself) re-fetches the page every `REFRESH_SECS` with the session cookie and swaps the
//! page's `<main id="dash">` and the "as of" line. It skips a round while the tab is hidden
//! (and fetches as soon as it shows again) or while a person is typing into the attempts
//! filter (a focused field, or one changed and not yet sent); it keeps the scroll position,
//! which `<details>` are open, and the keyboard focus (on the same button or summary). A response without the dashboard's `<main>` is a login
//! page (the session ended: the page reloads to show it) or an error (skipped; tried again
//! next round). Without JavaScript, a 30 s meta refresh in `<noscript>` reloads the page.
//!
//! No new endpoint: the script asks `/`, behind the same session check as the page, so a
//! request without a valid session gets the login form and no data.

/// Seconds between two fetches of the page by the script.
pub const REFRESH_SECS: u32 = 10;

/// The script; it reads its interval from `main#dash[data-refresh]`.
pub const SCRIPT: &str = r##"
(function () {
  "use strict";
  var main = document.getElementById("dash");
  if (!main || !window.fetch || !window.DOMParser) return;
  var every = (parseInt(main.getAttribute("data-refresh"), 10) || 10) * 1000;
  var busy = false;
  // The filter form's values as the server last sent them.
  function fields() {
    var all = document.querySelectorAll("#dash form[method=get] input, #dash form[method=get] select");
    return Array.prototype.map.call(all, function (f) { return f.name + "=" + f.value; }).join("&");
  }
  var sent = fields();
  function editing() {
    var a = document.activeElement;
    if (a && a.form && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
    return fields() !== sent;
  }
  // Where the keyboard focus is in the page, as a selector the new page answers too.
  function focused(within) {
    var a = document.activeElement;
    if (!a || a === document.body || !within.contains(a) || !window.CSS) return null;
    if (a.id) return "#" + CSS.escape(a.id);
    var label = a.getAttribute("aria-label");
    if (label) return a.tagName.toLowerCase() + "[aria-label=\"" + CSS.escape(label) + "\"]";
    if (a.tagName === "SUMMARY" && a.parentElement && a.parentElement.id) {
      return "#" + CSS.escape(a.parentElement.id) + " > summary";
    }
    return null;
  }
  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("dash");
    if (!fresh) { location.reload(); return; }
    var now = document.getElementById("dash");
    if (!now || editing()) return;
    var open = {};
    now.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    fresh.querySelectorAll("details[id]").forEach(function (d) {
      if (d.id in open) d.open = open[d.id];
    });
    var x = window.scrollX, y = window.scrollY, focus = focused(now);
    now.replaceWith(document.adoptNode(fresh));
    var again = focus && document.querySelector(focus);
    if (again) again.focus({ preventScroll: true });
    var asof = doc.getElementById("asof"), mine = document.getElementById("asof");
    if (asof && mine) mine.textContent = asof.textContent;
    window.scrollTo(x, y);
    sent = fields();
  }
  function tick() {
    if (busy || document.hidden || editing()) return;
    busy = true;
    fetch(location.pathname + location.search, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        return r.text().then(function (t) { if (r.ok) swap(t); });
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  setInterval(tick, every);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) tick(); });
})();
"##;
