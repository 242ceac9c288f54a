"""A fixed catalog of MCP server listings and search queries with the app each should find: the store's ranking
test and benchmark use it (`recall_at`)."""

from __future__ import annotations

from collections.abc import Callable

# (namespace, name, description, tools, tags, category)
LISTINGS: list[tuple[str, str, str, str, str, str]] = [
    ("com.acme.weather", "Weather", "Current conditions, forecasts and severe weather alerts", "get_forecast, get_alerts", "weather, forecast", "data"),
    ("com.acme.github", "GitHub", "Issues, pull requests and repository search on GitHub", "search_repos, create_issue, list_pulls", "git, code", "developer"),
    ("com.acme.gitlab", "GitLab", "Merge requests and pipelines on GitLab", "list_merge_requests, run_pipeline", "git, ci", "developer"),
    ("com.acme.postgres", "Postgres", "Read-only SQL queries against a PostgreSQL database", "query, list_tables", "sql, database", "data"),
    ("com.acme.sqlite", "SQLite", "Query and inspect local SQLite files", "query, schema", "sql, database", "data"),
    ("com.acme.slack", "Slack", "Post messages and read channels in Slack workspaces", "post_message, list_channels", "chat, messaging", "communication"),
    ("com.acme.email", "Mailer", "Send and read email over IMAP and SMTP", "send_email, read_inbox", "email, smtp", "communication"),
    ("com.acme.calendar", "Calendar", "Create events and find free time in calendars", "create_event, free_busy", "calendar, scheduling", "productivity"),
    ("com.acme.notes", "Notes", "Write, tag and search personal notes", "create_note, search_notes", "notes, writing", "productivity"),
    ("com.acme.todo", "Todo", "Task lists with due dates and reminders", "add_task, complete_task", "tasks, reminders", "productivity"),
    ("com.acme.maps", "Maps", "Geocoding, directions and places nearby", "geocode, directions, places", "maps, navigation", "data"),
    ("com.acme.translate", "Translator", "Translate text between 100 languages", "translate, detect_language", "language, translation", "text"),
    ("com.acme.summarize", "Summarizer", "Summarize long documents and web pages", "summarize", "summary, text", "text"),
    ("com.acme.pdf", "PDF Tools", "Extract text and tables from PDF documents", "extract_text, extract_tables", "pdf, documents", "files"),
    ("com.acme.files", "Filesystem", "Read and write files in a sandboxed folder", "read_file, write_file, list_dir", "files, storage", "files"),
    ("com.acme.s3", "Object Storage", "Buckets and objects on S3-compatible storage", "put_object, get_object", "storage, s3", "files"),
    ("com.acme.browser", "Browser", "Headless browser automation: open pages, click, take screenshots", "open_page, click, screenshot", "web, automation", "web"),
    ("com.acme.fetch", "Fetch", "Download a web page and convert it to markdown", "fetch_url", "web, http", "web"),
    ("com.acme.search", "Web Search", "Search the web and return ranked results", "web_search", "search, web", "web"),
    ("com.acme.stocks", "Stocks", "Stock quotes, market data and company fundamentals", "quote, fundamentals", "finance, markets", "finance"),
    ("com.acme.crypto", "Crypto Prices", "Cryptocurrency prices and exchange rates", "price, convert", "crypto, finance", "finance"),
    ("com.acme.icp", "ICP Ledger", "Balances and transfers on the Internet Computer ledger", "balance, transfer", "icp, ledger, blockchain", "finance"),
    ("com.acme.invoice", "Invoices", "Create and send invoices, track payments", "create_invoice, payment_status", "billing, payments", "finance"),
    ("com.acme.crm", "CRM", "Contacts, deals and pipelines in a customer relationship manager", "find_contact, update_deal", "sales, contacts", "business"),
    ("com.acme.support", "Helpdesk", "Support tickets: triage, reply and close", "list_tickets, reply_ticket", "support, tickets", "business"),
    ("com.acme.jira", "Issue Tracker", "Track bugs and sprints in Jira projects", "create_bug, sprint_board", "jira, agile", "developer"),
    ("com.acme.docker", "Containers", "Manage Docker containers and images", "list_containers, run_container", "docker, containers", "devops"),
    ("com.acme.k8s", "Kubernetes", "Inspect pods, deployments and logs in Kubernetes clusters", "get_pods, logs", "kubernetes, cluster", "devops"),
    ("com.acme.metrics", "Metrics", "Query Prometheus metrics and alerting rules", "promql_query", "monitoring, metrics", "devops"),
    ("com.acme.logs", "Log Search", "Search application logs across services", "search_logs", "logging, observability", "devops"),
    ("com.acme.image", "Image Generator", "Generate images from text prompts", "generate_image", "images, art", "media"),
    ("com.acme.ocr", "OCR", "Recognize text in scanned images", "recognize_text", "ocr, images", "media"),
    ("com.acme.speech", "Speech", "Transcribe audio to text and synthesize speech", "transcribe, speak", "audio, speech", "media"),
    ("com.acme.video", "Video", "Cut, convert and caption video files", "convert_video, add_captions", "video, media", "media"),
    ("com.acme.music", "Music", "Search songs and manage playlists", "search_songs, add_to_playlist", "music, playlists", "media"),
    ("com.acme.recipes", "Recipes", "Find recipes by ingredient and diet", "find_recipe", "cooking, food", "lifestyle"),
    ("com.acme.fitness", "Fitness", "Log workouts and track progress", "log_workout", "health, exercise", "lifestyle"),
    ("com.acme.travel", "Travel", "Search flights and hotels", "search_flights, search_hotels", "travel, booking", "lifestyle"),
    ("com.acme.news", "News", "Headlines and articles from news sources", "headlines", "news, articles", "web"),
    ("com.acme.wiki", "Wikipedia", "Look up encyclopedia articles", "lookup_article", "wiki, encyclopedia", "knowledge"),
    ("com.acme.arxiv", "Papers", "Search scientific papers on arXiv", "search_papers", "research, science", "knowledge"),
    ("com.acme.math", "Calculator", "Arithmetic, algebra and unit conversion", "evaluate, convert_units", "math, units", "knowledge"),
    ("com.acme.time", "Time Zones", "Current time and time zone conversion", "now, convert_timezone", "time, timezone", "knowledge"),
    ("com.acme.shell", "Shell", "Run commands in an isolated shell", "run_command", "terminal, shell", "developer"),
    ("com.acme.python", "Python Runner", "Execute Python code in a sandbox", "run_python", "python, code", "developer"),
    ("com.acme.regex", "Regex Tester", "Test regular expressions against sample text", "test_regex", "regex, text", "developer"),
    ("com.acme.sheets", "Spreadsheets", "Read and update spreadsheet cells", "read_range, write_range", "spreadsheet, tables", "productivity"),
    ("com.acme.drive", "Cloud Drive", "Find and share documents in cloud drives", "find_document, share", "documents, sharing", "files"),
    ("com.acme.sms", "SMS", "Send text messages to phones", "send_sms", "sms, messaging", "communication"),
    ("com.acme.discord", "Discord", "Post to Discord channels and read threads", "post, read_thread", "chat, community", "communication"),
    ("com.acme.security", "Vulnerability Scanner", "Scan dependencies for known vulnerabilities", "scan_dependencies", "security, cve", "devops"),
    ("com.acme.dns", "DNS", "Look up DNS records and check domains", "lookup_record, whois", "dns, domains", "web"),
]

# (query, the namespace it should find)
QUERIES: list[tuple[str, str]] = [
    ("weather", "com.acme.weather"), ("forecast", "com.acme.weather"), ("severe alerts", "com.acme.weather"),
    ("github pull requests", "com.acme.github"), ("merge requests", "com.acme.gitlab"),
    ("postgresql", "com.acme.postgres"), ("sqlite", "com.acme.sqlite"), ("slack channel", "com.acme.slack"),
    ("send email", "com.acme.email"), ("calendar free time", "com.acme.calendar"), ("notes", "com.acme.notes"),
    ("reminders", "com.acme.todo"), ("directions", "com.acme.maps"), ("translate", "com.acme.translate"),
    ("summarize documents", "com.acme.summarize"), ("pdf tables", "com.acme.pdf"), ("s3 bucket", "com.acme.s3"),
    ("screenshot", "com.acme.browser"), ("markdown", "com.acme.fetch"), ("stock quotes", "com.acme.stocks"),
    ("cryptocurrency", "com.acme.crypto"), ("icp transfer", "com.acme.icp"), ("invoices", "com.acme.invoice"),
    ("support tickets", "com.acme.support"), ("jira sprint", "com.acme.jira"), ("docker containers", "com.acme.docker"),
    ("kubernetes pods", "com.acme.k8s"), ("promql", "com.acme.metrics"), ("transcribe audio", "com.acme.speech"),
    ("playlists", "com.acme.music"), ("recipes", "com.acme.recipes"), ("flights", "com.acme.travel"),
    ("arxiv papers", "com.acme.arxiv"), ("time zone", "com.acme.time"), ("python code", "com.acme.python"),
    ("vulnerabilities", "com.acme.security"), ("whois", "com.acme.dns"), ("Wikipedia", "com.acme.wiki"),
    ("forecasting", "com.acme.weather"), ("translat", "com.acme.translate"),
]


def recall_at(k: int, search: Callable[[str], list[str]]) -> tuple[float, list[tuple[str, str, list[str]]]]:
    """The share of queries whose app is in the first `k` results, and the misses (query, wanted, got)."""
    misses = []
    for query, wanted in QUERIES:
        got = search(query)[:k]
        if wanted not in got:
            misses.append((query, wanted, got))
    return 1 - len(misses) / len(QUERIES), misses
