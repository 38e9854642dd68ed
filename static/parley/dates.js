// Dates as people read them in a chat: "Today", "Yesterday", a weekday within the week, then
// a date (with the year once it is not this year's). Times in the local time zone.

const DAY_MS = 24 * 60 * 60 * 1000;
const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const weekday = new Intl.DateTimeFormat(undefined, { weekday: "long" });
const shortWeekday = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const dayThisYear = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const dayOtherYear = new Intl.DateTimeFormat(undefined, { month: "long", day: "numeric", year: "numeric" });
const shortThisYear = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const shortOtherYear = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", year: "numeric" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

const startOfDay = (date) => new Date(date.getFullYear(), date.getMonth(), date.getDate());

/** Whole calendar days from `date` to `now` (0 today, 1 yesterday), across DST changes too. */
export function daysAgo(date, now = new Date()) {
  return Math.round((startOfDay(now) - startOfDay(date)) / DAY_MS);
}

/** A key that is equal for two times on the same local calendar day. */
export const dayKey = (iso) => startOfDay(new Date(iso)).getTime();

/** The label of a date separator. */
export function dayLabel(iso, now = new Date()) {
  const date = new Date(iso);
  const ago = daysAgo(date, now);
  if (ago === 0) return "Today";
  if (ago === 1) return "Yesterday";
  if (ago > 1 && ago < 7) return weekday.format(date);
  return date.getFullYear() === now.getFullYear() ? dayThisYear.format(date) : dayOtherYear.format(date);
}

/** A message's time of day (the separator above it says which day). */
export const timeOfDay = (iso) => (iso ? time.format(new Date(iso)) : "");

/** The full date and time: shown on hover and read out by screen readers. */
export const fullTime = (iso) => (iso ? full.format(new Date(iso)) : "");

/** A compact "when" for the conversation list: a time today, then "Yesterday", a weekday, a date. */
export function shortWhen(iso, now = new Date()) {
  if (!iso) return "";
  const date = new Date(iso);
  const ago = daysAgo(date, now);
  if (ago === 0) return time.format(date);
  if (ago === 1) return "Yesterday";
  if (ago > 1 && ago < 7) return shortWeekday.format(date);
  return date.getFullYear() === now.getFullYear() ? shortThisYear.format(date) : shortOtherYear.format(date);
}

/** "Last seen today at 14:05", "Last seen yesterday at 09:12", "Last seen Monday", "Last seen Mar 3". */
export function lastSeen(iso, now = new Date()) {
  if (!iso) return "Offline";
  const date = new Date(iso);
  const ago = daysAgo(date, now);
  if (ago <= 0) return `Last seen today at ${time.format(date)}`;
  if (ago === 1) return `Last seen yesterday at ${time.format(date)}`;
  if (ago < 7) return `Last seen ${weekday.format(date)}`;
  return `Last seen ${shortWhen(iso, now)}`;
}
