// The index page: its strings in the chosen language (i18n.js) and the language switcher.
import { initI18n } from "/static/i18n.js";

initI18n({ switcherIn: document.getElementById("lang-switch") });
