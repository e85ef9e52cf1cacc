// digest preview: toggles, and live updates over server-sent events.
// On each new build the page fetches itself again and swaps the regions marked
// data-live; the email frame is replaced only when its HTML changed, by loading
// the new one hidden beside the old and moving it into place at the old scroll
// position. Toggles live on <body data-width|scheme|view> and in the query string.
"use strict";
(() => {
  const body = document.body;
  const week = body.dataset.week;
  let busy = false;
  let again = false;
  let incoming = null;

  function frameSource() {
    return `/${week}/frame.html?scheme=${encodeURIComponent(body.dataset.scheme || "light")}&h=${body.dataset.frame}`;
  }

  function swapFrame() {
    const current = document.getElementById("frame");
    if (!current) return;
    if (incoming) incoming.remove();
    const next = current.cloneNode(false);
    next.removeAttribute("id");
    next.classList.add("incoming");
    incoming = next;
    next.addEventListener("load", () => {
      if (incoming !== next) return;
      incoming = null;
      const old = document.getElementById("frame");
      let x = 0;
      let y = 0;
      try { x = old.contentWindow.scrollX; y = old.contentWindow.scrollY; } catch (e) { /* gone */ }
      try { next.contentWindow.scrollTo(x, y); } catch (e) { /* not ours */ }
      if (old) old.remove();
      next.id = "frame";
      next.classList.remove("incoming");
      body.dataset.frameLoads = String(Number(body.dataset.frameLoads || 0) + 1);
      body.dataset.updated = String(Date.now());
    });
    next.src = frameSource();
    current.after(next);
  }

  function syncToggles() {
    for (const button of document.querySelectorAll("[data-toggle]")) {
      button.setAttribute("aria-pressed", String(body.dataset[button.dataset.toggle] === button.dataset.value));
    }
    const query = new URLSearchParams(location.search);
    for (const button of document.querySelectorAll("[data-toggle]")) {
      query.set(button.dataset.toggle, body.dataset[button.dataset.toggle]);
    }
    history.replaceState(history.state, "", `${location.pathname}?${query}${location.hash}`);
  }

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const response = await fetch(location.pathname + location.search, { cache: "no-store" });
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        if (fresh.body.dataset.page !== body.dataset.page) {
          location.reload(); // the edition came or went: show the server's page for it
          return;
        }
        for (const region of fresh.querySelectorAll("[data-live]")) {
          const old = document.getElementById(region.id);
          if (old) old.replaceWith(document.adoptNode(region));
        }
        document.title = fresh.title;
        body.dataset.updated = String(Date.now());
        body.dataset.version = fresh.body.dataset.version;
        if (fresh.body.dataset.frame !== body.dataset.frame) {
          body.dataset.frame = fresh.body.dataset.frame;
          if (fresh.body.dataset.frame !== "none") swapFrame();
        }
      } while (again);
    } catch (e) {
      // The server is restarting; the event stream reconnects and asks again.
    } finally {
      busy = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-toggle]");
    if (button) {
      const name = button.dataset.toggle;
      if (body.dataset[name] === button.dataset.value) return;
      body.dataset[name] = button.dataset.value;
      syncToggles();
      if (name === "scheme") swapFrame();
      return;
    }
    if (event.target.closest("[data-hide-overlay]")) {
      document.getElementById("overlay").hidden = true;
    }
  });

  if (week && body.dataset.page === "edition") syncToggles();

  if (window.EventSource) {
    const source = new EventSource(`/_events?week=${encodeURIComponent(week || "")}`);
    source.addEventListener("build", (event) => {
      const { version } = JSON.parse(event.data);
      if (version !== body.dataset.version) refresh();
    });
    source.addEventListener("open", () => { body.dataset.stream = "connected"; });
    source.addEventListener("error", () => { body.dataset.stream = "reconnecting"; });
  }
})();
