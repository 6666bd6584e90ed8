// SkyLocal Flights: one page, five screens (search -> results -> passengers -> review -> confirmed).
// The server owns the data: schedules come from /api/flights, bookings are validated and stored by /api/bookings.
"use strict";
const MAX_PASSENGERS = 4;
const $ = (id) => document.getElementById(id);
const state = { passengers: 1, search: null, query: null, flight: null, details: null };

function show(screen) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== screen + "-screen";
  window.scrollTo(0, 0);
}

function setPassengers(n) {
  state.passengers = Math.min(MAX_PASSENGERS, Math.max(1, n));
  $("pax-count").textContent = String(state.passengers);
}

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

$("pax-minus").onclick = () => setPassengers(state.passengers - 1);
$("pax-plus").onclick = () => setPassengers(state.passengers + 1);

$("search-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const query = { origin: $("origin").value, destination: $("destination").value, date: $("date").value };
  $("search-error").textContent = "";
  try {
    state.search = await api("/api/flights?" + new URLSearchParams(query));
    state.query = query;
  } catch (e) {
    $("search-error").textContent = e.message;
    return;
  }
  const s = state.search;
  $("results-title").textContent = `${s.origin.city} (${s.origin.code}) → ${s.destination.city} (${s.destination.code})`;
  $("results-sub").textContent = `${s.date_label} · ${state.passengers} passenger${state.passengers > 1 ? "s" : ""}`;
  const list = $("flight-list");
  list.replaceChildren();
  s.flights.forEach((f, i) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="times">${f.depart} → ${f.arrive}</span>
      <span class="meta">${f.airline} · ${f.flight}<br>${Math.floor(f.duration_min / 60)} h ${f.duration_min % 60} min</span>
      <span class="price">€${f.price_eur}</span>`;
    const pick = document.createElement("button");
    pick.type = "button";
    pick.className = "primary";
    pick.id = `select-${i + 1}`;
    pick.textContent = "Select";
    pick.onclick = () => choose(f);
    li.appendChild(pick);
    list.appendChild(li);
  });
  show("results");
};

function choose(flight) {
  state.flight = flight;
  const rows = $("passenger-rows");
  rows.replaceChildren();
  for (let i = 1; i <= state.passengers; i++) {
    const row = document.createElement("div");
    row.className = "passenger-row";
    row.innerHTML = `<span class="label">Passenger ${i}</span>
      <input id="first-name-${i}" placeholder="First name" aria-label="Passenger ${i} first name">
      <input id="last-name-${i}" placeholder="Last name" aria-label="Passenger ${i} last name">`;
    rows.appendChild(row);
  }
  $("passenger-error").textContent = "";
  show("passengers");
}

$("passenger-form").onsubmit = (ev) => {
  ev.preventDefault();
  const passengers = [];
  for (let i = 1; i <= state.passengers; i++) {
    const p = { first_name: $(`first-name-${i}`).value.trim(), last_name: $(`last-name-${i}`).value.trim() };
    if (!p.first_name || !p.last_name) {
      $("passenger-error").textContent = `Enter the first and last name of passenger ${i}.`;
      return;
    }
    passengers.push(p);
  }
  const email = $("email").value.trim();
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
    $("passenger-error").textContent = "Enter a valid email address.";
    return;
  }
  state.details = { passengers, email };
  const s = state.search, f = state.flight;
  const rows = [
    ["Flight", `${f.flight} (${f.airline})`],
    ["Route", `${s.origin.city} (${s.origin.code}) → ${s.destination.city} (${s.destination.code})`],
    ["Date", `${s.date_label}, ${f.depart} → ${f.arrive}`],
    ["Passengers", passengers.map((p) => `${p.first_name} ${p.last_name}`).join(", ")],
    ["Email", email],
    ["Total", `€${f.price_eur * passengers.length}`],
  ];
  $("review-list").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.textContent = v;
    return [dt, dd];
  }));
  $("confirm-error").textContent = "";
  show("review");
};

$("confirm-button").onclick = async () => {
  const button = $("confirm-button");
  button.disabled = true;  // one click, one booking
  try {
    const booking = await api("/api/bookings", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...state.query, flight: state.flight.flight, ...state.details }),
    });
    $("booking-code").textContent = booking.code;
    $("confirmed-summary").textContent =
      `${booking.flight} ${booking.origin} → ${booking.destination} on ${booking.date}, total €${booking.total_eur}.`;
    show("confirmed");
  } catch (e) {
    $("confirm-error").textContent = e.message;
  } finally {
    button.disabled = false;
  }
};

$("back-to-search").onclick = () => show("search");
$("back-to-results").onclick = () => show("results");
$("back-to-passengers").onclick = () => show("passengers");
$("new-search").onclick = () => show("search");

api("/api/airports").then((airports) => {
  $("city-list").textContent = "Cities: " + airports.map((a) => a.city).join(", ");
});
