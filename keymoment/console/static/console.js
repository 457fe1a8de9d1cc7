// keymoment console: refresh the server-rendered panels every second; forms without reloading.
// No library, no request outside this console (the CSP forbids it anyway).
"use strict";
(function () {
  const every = 1000;
  let busy = false;

  function query() {
    const params = new URLSearchParams();
    const rule = document.getElementById("f-rule");
    const outcome = document.getElementById("f-outcome");
    const q = document.getElementById("q");
    if (rule && rule.value) params.set("rule", rule.value);
    if (outcome && outcome.value) params.set("outcome", outcome.value);
    if (q && q.value.trim()) params.set("customer", q.value.trim());
    return params.toString();
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    const stamp = document.getElementById("updated");
    try {
      const response = await fetch("/panels?" + query(), { credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const panels = await response.json();
      for (const [id, html] of Object.entries(panels)) {
        const node = document.getElementById(id);
        if (node && node.innerHTML !== html) node.innerHTML = html; // server-escaped HTML
      }
      stamp.textContent = "updated " + new Date().toLocaleTimeString();
      stamp.className = "";
    } catch (err) {
      stamp.textContent = "console unreachable (" + err.message + ")";
      stamp.className = "stale";
    } finally {
      busy = false;
    }
  }

  function submit(event) {
    event.preventDefault();
    const q = query();
    history.replaceState(null, "", q ? "/?" + q : "/");
    refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    for (const id of ["filters", "search"]) {
      const form = document.getElementById(id);
      if (form) form.addEventListener("submit", submit);
    }
    for (const id of ["f-rule", "f-outcome"]) {
      const select = document.getElementById(id);
      if (select) select.addEventListener("change", submit);
    }
    setInterval(refresh, every);
  });
})();
