"""The canonical data model: every table, column, type and rule, declared once.

Ingest builds its casts and checks from these declarations, `personae status` and the docs
list them, and later stages read the tables they describe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Kind = Literal["id", "text", "int", "float", "bool", "timestamp", "date", "gender", "json", "ints"]

SQL_TYPES: dict[str, str] = {
    "id": "VARCHAR",
    "text": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "gender": "VARCHAR",
    "json": "JSON",
    "ints": "INTEGER[]",
}


@dataclass(frozen=True)
class Column:
    """One canonical column: its kind, whether a row without it is rejected, its valid range."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    low: float | None = None
    high: float | None = None
    synonyms: tuple[str, ...] = ()
    # Names that mean this column only when no source column matches a synonym: a
    # customer's name or e-mail address is the customer key of a file without an id.
    weak_synonyms: tuple[str, ...] = ()

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.kind]


@dataclass(frozen=True)
class Table:
    """One canonical table: its columns, its key and what one row is."""

    name: str
    row: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    derived: tuple[str, ...] = field(default=())

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def mappable(self) -> list[Column]:
        """Columns a source column may be mapped onto (derived ones are computed)."""
        return [c for c in self.columns if c.name not in self.derived]


_YEAR = date.today().year

# Names of a customer that serve as the customer key when a source has no id column.
CUSTOMER_NAMES = (
    "email",
    "emailaddress",
    "customeremail",
    "mail",
    "customername",
    "clientname",
    "buyername",
    "membername",
    "accountname",
    "account",
    "name",
    "fullname",
)

# Lineage columns every canonical table carries after its own columns.
LINEAGE = (
    Column("source_id", "text", "Which ingested source the row came from (see `sources`)."),
    Column("source_row", "int", "Line number (text files) or row number in that source."),
    Column("attributes", "json", "Source columns the model lacks, as a JSON object."),
)

CUSTOMERS = Table(
    "customers",
    "customer",
    (
        Column(
            "customer_id",
            "id",
            "Customer identifier.",
            required=True,
            synonyms=(
                "customerid",
                "custid",
                "customerno",
                "customernumber",
                "clientid",
                "customeruniqueid",
                "userid",
                "memberid",
                "id",
                "customer",
                "client",
                "clientno",
                "clientnumber",
                "membernumber",
                "memberno",
                "member",
                "buyer",
                "buyerid",
                "customercode",
                "accountnumber",
            ),
            weak_synonyms=CUSTOMER_NAMES,
        ),
        Column(
            "account_id",
            "id",
            "B2B account the customer belongs to.",
            synonyms=("accountid", "companyid"),
        ),
        Column("first_name", "text", "Given name.", synonyms=("firstname", "givenname", "fname")),
        Column(
            "last_name",
            "text",
            "Family name.",
            synonyms=("lastname", "surname", "familyname", "lname"),
        ),
        Column("email", "text", "E-mail address.", synonyms=("email", "emailaddress", "mail")),
        Column(
            "phone",
            "text",
            "Phone number.",
            synonyms=("phone", "phonenumber", "mobile", "telephone", "tel"),
        ),
        Column(
            "gender",
            "gender",
            "female, male or other (normalised from F/M/Female/...).",
            synonyms=("gender", "genre", "sex"),
        ),
        Column(
            "birth_date",
            "date",
            "Date of birth.",
            synonyms=("birthdate", "dateofbirth", "dob", "birthday"),
        ),
        Column(
            "birth_year",
            "int",
            "Year of birth.",
            low=1910,
            high=_YEAR,
            synonyms=("birthyear", "yearbirth", "yearofbirth", "yob"),
        ),
        Column(
            "age", "int", "Age in years as given by the source.", low=0, high=120, synonyms=("age",)
        ),
        Column(
            "income",
            "float",
            "Yearly income in the source's currency.",
            low=0,
            synonyms=("income", "annualincome", "yearlyincome", "householdincome", "salary"),
        ),
        Column(
            "household_size",
            "int",
            "People in the household.",
            low=1,
            high=50,
            synonyms=("householdsize", "familysize"),
        ),
        Column(
            "children",
            "int",
            "Children in the household.",
            low=0,
            high=30,
            synonyms=("children", "kids", "numchildren", "kidhome"),
        ),
        Column(
            "marital_status",
            "text",
            "Marital status as given.",
            synonyms=("maritalstatus", "marital", "civilstatus"),
        ),
        Column(
            "education",
            "text",
            "Education level as given.",
            synonyms=("education", "educationlevel"),
        ),
        Column("occupation", "text", "Occupation.", synonyms=("occupation", "job", "profession")),
        Column("country", "text", "Country.", synonyms=("country", "countrycode", "nation")),
        Column(
            "region",
            "text",
            "Region, state or province.",
            synonyms=("region", "state", "province", "customerstate", "county"),
        ),
        Column("city", "text", "City.", synonyms=("city", "town", "customercity")),
        Column(
            "postal_code",
            "text",
            "Postal or zip code (text: leading zeros kept).",
            synonyms=("postalcode", "postcode", "zip", "zipcode", "customerzipcodeprefix"),
        ),
        Column(
            "created_at",
            "timestamp",
            "When the customer was acquired or registered.",
            synonyms=(
                "createdat",
                "dtcustomer",
                "signupdate",
                "registrationdate",
                "customersince",
                "joindate",
                "created",
            ),
        ),
        Column(
            "marketing_consent",
            "bool",
            "Whether the customer agreed to marketing.",
            synonyms=("marketingconsent", "consent", "optin", "emailoptin", "subscribed"),
        ),
        Column(
            "consent_at",
            "timestamp",
            "When consent was given or withdrawn.",
            synonyms=("consentat", "consentdate", "optindate"),
        ),
        # Customer-level summaries (one row per customer, no order lines): the traits of a
        # customer without orders come from them (docs/loading-real-files.md).
        Column(
            "purchases",
            "int",
            "Summary: purchases so far, as the source counts them.",
            low=0,
            synonyms=(
                "purchases",
                "numberofpurchases",
                "numpurchases",
                "previouspurchases",
                "totalpurchases",
                "purchasecount",
                "ordercount",
                "numorders",
                "numberoforders",
                "totalorders",
                "transactions",
                "numtransactions",
                "transactioncount",
            ),
        ),
        Column(
            "total_spend",
            "float",
            "Summary: total purchase value so far (e.g. TotalCharges).",
            synonyms=(
                "totalspend",
                "totalspent",
                "totalamount",
                "totalpurchaseamount",
                "totalcharges",
                "lifetimevalue",
                "amountspent",
                "totalrevenue",
                "totalsales",
                "monetary",
                "monetaryvalue",
            ),
        ),
        Column(
            "last_purchase_amount",
            "float",
            "Summary: value of the last (or typical) purchase.",
            synonyms=(
                "lastpurchaseamount",
                "purchaseamount",
                "lastorderamount",
                "lastordervalue",
                "lastpurchasevalue",
            ),
        ),
        Column(
            "monthly_charges",
            "float",
            "Summary: what a subscriber pays per month.",
            low=0,
            synonyms=(
                "monthlycharges",
                "monthlycharge",
                "monthlyfee",
                "monthlyspend",
                "monthlybill",
            ),
        ),
        Column(
            "tenure_months",
            "float",
            "Summary: months as a customer.",
            low=0,
            synonyms=(
                "tenure",
                "tenuremonths",
                "monthsascustomer",
                "customertenure",
                "monthsonbook",
            ),
        ),
        Column(
            "last_purchase_at",
            "timestamp",
            "Summary: when the customer last bought.",
            synonyms=(
                "lastpurchaseat",
                "lastpurchasedate",
                "lastpurchase",
                "lastorderdate",
                "lastorder",
                "lasttransactiondate",
                "dateoflastpurchase",
            ),
        ),
        Column(
            "days_since_last_purchase",
            "int",
            "Summary: days from the last purchase to the as-of date of the summary.",
            low=0,
            synonyms=(
                "dayssincelastpurchase",
                "dayssincelastorder",
                "daysincelastpurchase",
                "recencydays",
            ),
        ),
        Column(
            "churned",
            "bool",
            "Label: the customer left (churn, exited, attrition); kept for scoring later.",
            synonyms=("churned", "churn", "exited", "attrition", "ischurned", "churnflag"),
        ),
        Column(
            "responded",
            "bool",
            "Label: the customer responded to a campaign; kept for scoring later.",
            synonyms=("responded", "respondedtocampaign", "campaignresponse", "acceptedoffer"),
        ),
        Column(
            "subscriber",
            "bool",
            "Label: the customer has a subscription or membership; kept for scoring later.",
            synonyms=("subscriber", "subscriptionstatus", "hassubscription", "issubscriber"),
        ),
    ),
    key=("customer_id",),
)

ORDERS = Table(
    "orders",
    "order line",
    (
        Column(
            "order_id",
            "id",
            "Order or invoice identifier (one line per source row if unmapped).",
            required=True,
            synonyms=(
                "orderid",
                "invoiceno",
                "invoice",
                "invoiceid",
                "invoicenumber",
                "ordernumber",
                "orderno",
                "transactionid",
                "receiptid",
            ),
        ),
        Column(
            "line_no",
            "int",
            "Line number within the order (1, 2, ... in source order).",
            required=True,
            synonyms=("lineno", "linenumber", "orderitemid", "itemno", "orderlinenumber"),
        ),
        Column(
            "customer_id",
            "id",
            "Buyer; empty means an anonymous order.",
            synonyms=(
                "customerid",
                "custid",
                "customerno",
                "clientid",
                "userid",
                "memberid",
                "customer",
                "customernumber",
                "client",
                "clientno",
                "clientnumber",
                "membernumber",
                "memberno",
                "member",
                "buyer",
                "buyerid",
                "customercode",
                "accountnumber",
                "shopper",
                "shopperid",
            ),
            weak_synonyms=CUSTOMER_NAMES,
        ),
        Column(
            "ordered_at",
            "timestamp",
            "When the order was placed.",
            required=True,
            synonyms=(
                "orderedat",
                "invoicedate",
                "orderdate",
                "date",
                "purchasedate",
                "transactiondate",
                "orderpurchasetimestamp",
                "timestamp",
                "datetime",
            ),
        ),
        Column(
            "product_id",
            "id",
            "Product code or SKU.",
            synonyms=("productid", "stockcode", "sku", "itemid", "productcode", "item"),
        ),
        Column(
            "product_name",
            "text",
            "Product description.",
            synonyms=("productname", "description", "itemname", "product", "itemdescription"),
        ),
        Column(
            "category",
            "text",
            "Product category.",
            synonyms=("category", "productcategory", "categoryname", "department", "productline"),
        ),
        Column(
            "quantity",
            "float",
            "Units (negative on returns).",
            synonyms=("quantity", "qty", "units", "numberofcds", "count", "quantityordered"),
        ),
        Column(
            "unit_price",
            "float",
            "Price per unit.",
            synonyms=("unitprice", "price", "itemprice", "priceeach"),
        ),
        Column(
            "amount",
            "float",
            "Line value; quantity * unit_price when not given.",
            synonyms=(
                "amount",
                "dollarvalue",
                "value",
                "revenue",
                "sales",
                "total",
                "linetotal",
                "spend",
                "payment",
                "paymentvalue",
            ),
        ),
        Column(
            "discount",
            "float",
            "Discount on the line, in money; derived from discount_rate and amount when only "
            "the rate is given (amount * rate / (1 - rate): amount is what was paid).",
            synonyms=("discount", "discountamount", "discountvalue"),
        ),
        Column(
            "discount_rate",
            "float",
            "Discount as a share of the list price, 0-1 ('20%' and 0.2 both read as 0.2).",
            low=0,
            high=1,
            synonyms=(
                "discountrate",
                "discountpct",
                "discountpercent",
                "discountpercentage",
                "discountperc",
                "pctdiscount",
                "percentdiscount",
                "discountshare",
            ),
        ),
        Column(
            "status",
            "text",
            "Order or line status as given (Shipped, Cancelled, ...); values listed in the "
            "source's cancel_statuses (default: cancelled, returned, refunded, ...) make the "
            "line a return (is_return).",
            synonyms=(
                "status",
                "orderstatus",
                "transactionstatus",
                "deliverystatus",
                "shipmentstatus",
                "linestatus",
            ),
        ),
        Column(
            "currency", "text", "ISO 4217 currency code.", synonyms=("currency", "currencycode")
        ),
        Column(
            "channel",
            "text",
            "Sales channel (web, store, app, catalog, ...).",
            synonyms=("channel", "saleschannel", "orderchannel"),
        ),
        Column(
            "is_return",
            "bool",
            "Cancellation or return (cancelled invoice or negative quantity).",
            synonyms=("isreturn", "returned"),
        ),
        Column(
            "is_non_product",
            "bool",
            "Postage, fees, discounts and other adjustments.",
            synonyms=("isnonproduct",),
        ),
    ),
    key=("order_id", "line_no"),
    derived=("is_non_product",),
)

EVENTS = Table(
    "events",
    "behavioural event",
    (
        Column(
            "event_id",
            "id",
            "Event identifier (source and row if unmapped).",
            required=True,
            synonyms=("eventid",),
        ),
        Column(
            "customer_id",
            "id",
            "Known customer.",
            synonyms=("customerid", "userid", "custid", "memberid"),
        ),
        Column(
            "anonymous_id",
            "id",
            "Cookie or device id before the customer is known.",
            synonyms=("anonymousid", "sessionid", "cookieid", "visitorid", "deviceid"),
        ),
        Column(
            "account_id",
            "id",
            "B2B account or lead the event belongs to.",
            synonyms=("accountid", "mqlid", "leadid"),
        ),
        Column(
            "occurred_at",
            "timestamp",
            "When it happened.",
            required=True,
            synonyms=("occurredat", "timestamp", "eventtime", "eventdate", "time", "date"),
        ),
        Column(
            "event_type",
            "text",
            "page_view, product_view, search, add_to_cart, checkout, "
            "purchase, email_open, email_click, review, ...",
            required=True,
            synonyms=("eventtype", "event", "eventname", "action", "type"),
        ),
        Column("channel", "text", "Channel.", synonyms=("channel", "source", "medium")),
        Column(
            "device_type", "text", "desktop, mobile or tablet.", synonyms=("devicetype", "device")
        ),
        Column("os", "text", "Operating system.", synonyms=("os", "operatingsystem")),
        Column("browser", "text", "Browser.", synonyms=("browser", "useragent")),
        Column("platform", "text", "app or web.", synonyms=("platform",)),
        Column("page", "text", "Page or screen.", synonyms=("page", "url", "pageurl", "path")),
        Column("product_id", "id", "Product involved.", synonyms=("productid", "sku", "itemid")),
        Column("campaign", "text", "Campaign.", synonyms=("campaign", "utmcampaign")),
    ),
    key=("event_id",),
)

RESPONSES = Table(
    "responses",
    "answer to one survey item",
    (
        Column(
            "response_id",
            "id",
            "Response (respondent x survey) identifier.",
            required=True,
            synonyms=("responseid", "respondentid"),
        ),
        Column("customer_id", "id", "Respondent.", synonyms=("customerid", "userid")),
        Column("survey_id", "id", "Survey.", synonyms=("surveyid", "survey")),
        Column(
            "item_id",
            "id",
            "Survey item (question).",
            required=True,
            synonyms=("itemid", "questionid", "question", "item"),
        ),
        Column("item_text", "text", "Wording of the item.", synonyms=("itemtext", "questiontext")),
        Column(
            "construct",
            "text",
            "What the item measures: need, value, benefit, interest, ...",
            synonyms=("construct", "dimension"),
        ),
        Column(
            "value_num",
            "float",
            "Numeric answer (e.g. Likert 1-5).",
            synonyms=("valuenum", "score", "answer", "value", "rating"),
        ),
        Column("value_text", "text", "Text answer.", synonyms=("valuetext", "answertext")),
        Column(
            "answered_at",
            "timestamp",
            "When answered.",
            synonyms=("answeredat", "responsedate", "submittedat", "date"),
        ),
    ),
    key=("response_id", "item_id"),
)

FEEDBACK = Table(
    "feedback",
    "piece of free text",
    (
        Column(
            "feedback_id",
            "id",
            "Feedback identifier.",
            required=True,
            synonyms=("feedbackid", "reviewid", "tweetid", "ticketid", "commentid", "id"),
        ),
        Column(
            "customer_id",
            "id",
            "Author, when known.",
            synonyms=("customerid", "userid", "authorid", "custid"),
        ),
        Column(
            "created_at",
            "timestamp",
            "When written.",
            synonyms=(
                "createdat",
                "reviewcreationdate",
                "tweetcreated",
                "date",
                "created",
                "timestamp",
                "postedat",
            ),
        ),
        Column(
            "channel", "text", "review, ticket, social, interview or nps.", synonyms=("channel",)
        ),
        Column(
            "rating",
            "float",
            "Star or score rating.",
            synonyms=("rating", "reviewscore", "score", "stars", "nps"),
        ),
        Column(
            "text",
            "text",
            "The free text.",
            required=True,
            synonyms=(
                "text",
                "reviewcommentmessage",
                "comment",
                "message",
                "body",
                "review",
                "reviewtext",
                "feedback",
                "content",
            ),
        ),
        Column("language", "text", "ISO language code.", synonyms=("language", "lang")),
        Column(
            "label",
            "text",
            "A human label given with the text (e.g. complaint reason).",
            synonyms=("label", "negativereason", "reason", "category", "topic"),
        ),
        Column("order_id", "id", "Order the text is about.", synonyms=("orderid",)),
    ),
    key=("feedback_id",),
)

ACCOUNTS = Table(
    "accounts",
    "B2B account or lead",
    (
        Column(
            "account_id",
            "id",
            "Account or lead identifier.",
            required=True,
            synonyms=("accountid", "mqlid", "leadid", "companyid"),
        ),
        Column("name", "text", "Company name.", synonyms=("name", "companyname", "accountname")),
        Column(
            "industry",
            "text",
            "Industry or business segment.",
            synonyms=("industry", "businesssegment", "sector", "vertical"),
        ),
        Column(
            "employees",
            "int",
            "Number of employees.",
            low=0,
            synonyms=("employees", "numberofemployees", "headcount", "companysize"),
        ),
        Column(
            "annual_revenue",
            "float",
            "Yearly revenue.",
            low=0,
            synonyms=("annualrevenue", "yearlyrevenue", "turnover"),
        ),
        Column("country", "text", "Country.", synonyms=("country",)),
        Column("region", "text", "Region or state.", synonyms=("region", "state")),
        Column(
            "created_at",
            "timestamp",
            "When the lead or account appeared.",
            synonyms=("createdat", "firstcontactdate", "created", "leaddate"),
        ),
        Column("origin", "text", "Lead source.", synonyms=("origin", "leadsource", "source")),
        Column(
            "stage",
            "text",
            "lead, qualified, won or lost.",
            synonyms=("stage", "status", "dealstage"),
        ),
        Column(
            "stage_at",
            "timestamp",
            "When the current stage was reached.",
            synonyms=("stageat", "wondate", "closedate", "closedat"),
        ),
        Column("owner", "text", "Sales owner.", synonyms=("owner", "srid", "salesrep")),
    ),
    key=("account_id",),
)

TABLES: dict[str, Table] = {
    t.name: t for t in (CUSTOMERS, ORDERS, EVENTS, RESPONSES, FEEDBACK, ACCOUNTS)
}

REJECT_REASONS: dict[str, str] = {
    "missing_id": "The row's identifier is empty.",
    "missing_value": "A required value is empty.",
    "bad_id": "The identifier does not match the source's id_pattern.",
    "bad_date": "A date or timestamp does not parse with the source's date format.",
    "bad_number": "A number does not parse.",
    "bad_bool": "A yes/no value is not one of true/false/yes/no/y/n/1/0.",
    "bad_category": "A value is not one of the allowed categories.",
    "out_of_range": "A number lies outside the column's valid range, or a date outside the "
    "plausible window (earliest_date, latest_date, earliest_birth_date).",
    "bad_row": "A line of a text file that is not a record: the wrong number of fields, an "
    "unclosed quote, or longer than 2 MiB (raw holds its text, cut to 1,000 characters).",
    "duplicate": "The row repeats an earlier row of the same source exactly.",
    "duplicate_id": "The row's key was already used by a different row.",
}


RUN_COLUMNS = (
    Column("run_id", "id", "The stage run that wrote the row (see `runs`)."),
    Column("as_of", "date", "The date the run describes."),
)


def output_tables() -> dict[str, Table]:
    """The tables the stages write, each row stamped with its run: declared here like the
    canonical ones (the traits columns come from the trait catalog)."""
    from personae.traits.catalog import TRAITS  # here: personae.traits imports the store

    def out(name: str, row: str, *columns: Column, key: tuple[str, ...] = ()) -> Table:
        return Table(name, row, (*columns, *RUN_COLUMNS), key)

    customer = Column("customer_id", "id", "The customer.")
    spend = Column("spend", "float", "Purchase value.")
    share = Column("share", "float", "Share of the customer's purchase value; NULL when it is 0.")
    tables = (
        out(
            "traits",
            "customer per traits run",
            customer,
            *(Column(t.name, t.dtype, t.definition) for t in TRAITS),
            key=("customer_id",),
        ),
        out(
            "occasion_calendar",
            "occasion window per traits run",
            Column("occasion", "text", "Occasion name."),
            Column("start", "date", "First day of the window."),
            Column("end", "date", "Last day of the window."),
        ),
        out(
            "occasion_spend",
            "customer and occasion per traits run",
            customer,
            Column("occasion", "text", "Occasion name."),
            spend,
            share,
        ),
        out(
            "category_spend",
            "customer and category per traits run",
            customer,
            Column("category", "text", "Product category."),
            spend,
            share,
        ),
        out(
            "predictions",
            "buyer per predict run",
            customer,
            Column("model", "text", "The purchase model used, or rfm_fallback."),
            Column("horizon", "text", "How far ahead, e.g. '12 months'."),
            Column("time_unit", "text", "Time unit of the traits the model read."),
            Column("expected_purchases", "float", "Expected purchases over the horizon."),
            Column("p_alive", "float", "Probability the customer is still active."),
            Column("churn_risk", "text", "high, medium or low (from P(alive))."),
            Column("expected_spend", "float", "Expected value of one transaction."),
            Column("clv", "float", "Discounted value over the horizon."),
            Column("clv_low", "float", "5th percentile of CLV over parameter draws."),
            Column("clv_high", "float", "95th percentile of CLV over parameter draws."),
            key=("customer_id",),
        ),
        out(
            "model_evaluations",
            "model, metric and key per predict run",
            Column("model", "text", "Purchase model."),
            Column(
                "metric",
                "text",
                "holdout_total, mae, mean_by_frequency, cumulative_by_week, churn_band (mean "
                "holdout purchases per churn-risk band of the calibration-period fit).",
            ),
            Column(
                "key",
                "text",
                "Group of the metric (all, a frequency bucket, a week, a churn-risk band).",
            ),
            Column("predicted", "float", "Model value (model 'baseline': past rate extrapolated)."),
            Column("actual", "float", "Observed value in the holdout."),
            Column("customers", "int", "Customers in the group (frequency buckets, bands)."),
        ),
        *segment_tables(out, customer),
    )
    return {t.name: t for t in tables}


# Output tables whose rows outlive `[store] keep_runs`: who was in which segment at each run
# is the history that `personae segments diff` and `members --as-of` read.
HISTORY_TABLES = (
    "segment_codes",
    "segmentations",
    "segments",
    "segment_traits",
    "cluster_diagnostics",
    "segment_overlap",
)

# Output tables that are views over others. A segments run writes one row per customer (its
# codes, a list) instead of one per customer and segmentation: 19 times fewer customer ids to
# write for the ready-made segmentations (1 M customers: 0.7 s, was 5.2 s). The view starts
# from `segments`, so a query for one segment reads only that segment's slot: at 1 M
# customers 0.03 s for its members (unnesting every slot first: 0.17 s).
VIEWS = {
    "memberships": """
        SELECT c.customer_id, s.segmentation, s.segment, c.run_id, c.as_of
        FROM segments AS s JOIN segment_codes AS c
          ON c.run_id = s.run_id AND c.codes[s.slot] = s.code""",
}
# Per view, the table holding the run ids of its rows (every run, also those kept before).
VIEW_RUNS = {"memberships": "segments"}
# Per view, how many rows a run has without unpacking them (a segment's size counts its
# memberships: counting the view's 203 M rows at 10 M customers took 7-10 s).
VIEW_ROWS = {"memberships": "SELECT coalesce(sum(size), 0) FROM segments WHERE run_id = ?"}
# Per view, where a store written before it keeps the table it replaced (renamed on open, its
# rows still read through the view).
VIEW_LEGACY = {"memberships": "memberships_before_codes"}


def segment_tables(out: Callable[..., Table], customer: Column) -> tuple[Table, ...]:
    """The segments stage's outputs: definitions, memberships, quality, distinguishing traits,
    the choice of k and the overlap of segmentations."""
    seg = Column("segmentation", "text", "Segmentation name.")
    segment = Column("segment", "text", "Segment name.")
    return (
        out(
            "segmentations",
            "segmentation per segments run",
            seg,
            Column("model", "text", "Segmentation model (demographic, value-based, ...)."),
            Column("kind", "text", "partition (one segment each) or audiences (overlapping)."),
            Column("method", "text", "rules, by_field, kmeans, kprototypes, gmm."),
            Column("origin", "text", "ready-made or config."),
            Column("description", "text", "What the segmentation is."),
            Column(
                "definition", "json", "Rules, field, or the fitted model with its preprocessing."
            ),
            Column("customers", "int", "Customers segmented (members of at least one segment)."),
            Column("segment_count", "int", "Segments with at least one member."),
            Column("silhouette", "float", "Separation: mean silhouette on a sample."),
            Column("stability", "float", "Mean bootstrap adjusted Rand index (clusterings)."),
            Column("warnings", "json", "Tiny, empty or unstable segments, as sentences."),
            key=("segmentation",),
        ),
        out(
            "segments",
            "segment per segments run",
            seg,
            segment,
            Column("position", "int", "Order within the segmentation (rules: evaluation order)."),
            Column("description", "text", "What the segment is."),
            Column("rule", "text", "The rule, the field value, or the cluster number."),
            Column("proposed_name", "text", "A name proposed from the distinguishing traits."),
            Column("size", "int", "Members."),
            Column("share_customers", "float", "Members / customers segmented."),
            Column(
                "share_revenue", "float", "Members' total_value / everyone's; NULL without amounts."
            ),
            Column("share_clv", "float", "Members' predicted CLV / everyone's; NULL without CLV."),
            Column("silhouette", "float", "Mean silhouette of the members in the sample."),
            Column("stability", "float", "Mean best bootstrap Jaccard overlap (clusters)."),
            Column("warning", "text", "Why the segment needs care, or NULL."),
            Column("slot", "int", "Members' slot in `segment_codes.codes` (from 1)."),
            Column("code", "int", "Members' code in that slot."),
            key=("segmentation", "segment"),
        ),
        out(
            "segment_codes",
            "customer per segments run",
            customer,
            Column(
                "codes",
                "ints",
                "The customer's segment code in each slot (a partition, or one audience); "
                "`segments.slot` and `segments.code` say which segment a code is. Read "
                "`memberships` for names.",
            ),
        ),
        out(
            "memberships",
            "customer and segment per segments run (a view of segment_codes and segments)",
            customer,
            seg,
            segment,
        ),
        out(
            "segment_traits",
            "distinguishing trait of a segment per segments run",
            seg,
            segment,
            Column("trait", "text", "Field."),
            Column("value", "text", "Category value (categorical traits), else NULL."),
            Column(
                "segment_mean", "float", "Mean (numeric) or share with the value (categorical)."
            ),
            Column("overall_mean", "float", "The same over everyone in the sample."),
            Column("std_diff", "float", "(segment mean - overall mean) / overall sd (numeric)."),
            Column("lift", "float", "Share in segment / share overall (categorical)."),
            Column("support", "int", "Members in the sample behind the figure."),
            Column("rank", "int", "1 = sets the segment apart most."),
        ),
        out(
            "cluster_diagnostics",
            "number of clusters tried per clustering per segments run",
            seg,
            Column("k", "int", "Clusters."),
            Column("silhouette", "float", "Mean silhouette on the sample."),
            Column("bic", "float", "Bayesian information criterion (lower is better)."),
            Column("inertia", "float", "Within-cluster sum of squares."),
            Column("chosen", "bool", "The k used."),
        ),
        out(
            "segment_overlap",
            "pair of segments of two partitions per segments run",
            Column("segmentation_a", "text", "First segmentation."),
            Column("segment_a", "text", "Its segment."),
            Column("segmentation_b", "text", "Second segmentation."),
            Column("segment_b", "text", "Its segment."),
            Column("customers", "int", "Customers in both segments."),
        ),
    )


def retired_table(table: Table) -> Table:
    """Where a refresh moves a source's replaced rows while a published run still reads
    them: the table's columns, lineage, and the ingest run that retired them."""
    retired = Column("retired_run", "id", "The ingest run that replaced these rows.")
    return Table(
        f"retired_{table.name}",
        f"replaced {table.row}",
        (*table.columns, *LINEAGE, retired),
        table.key,
    )


def create_sql(table: Table, lineage: bool = True) -> str:
    """DDL for a canonical table (columns, then lineage) or a stage output (lineage=False)."""
    cols = [f'"{c.name}" {c.sql_type}' for c in (*table.columns, *(LINEAGE if lineage else ()))]
    return f'CREATE TABLE IF NOT EXISTS "{table.name}" ({", ".join(cols)})'


def rejects_sql(table: Table) -> str:
    """DDL for a table's rejects: where the row came from, its raw values and why."""
    return (
        f'CREATE TABLE IF NOT EXISTS "rejects_{table.name}" ('
        "source_id VARCHAR, source_row BIGINT, raw JSON, reason VARCHAR, "
        '"column" VARCHAR, message VARCHAR, kept BOOLEAN)'
    )
