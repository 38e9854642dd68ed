from django.test import override_settings


def search(client, query):
    response = client.get("/api/v1/users", {"search": query})
    assert response.status_code == 200, response.json()
    return [u["username"] for u in response.json()["results"]]


def test_users_are_found_by_username_or_display_name(api, make_user):
    me = make_user("searcher")
    make_user("alice"), make_user("malik", display_name="Al"), make_user("bob")
    client = api.as_user(me)
    assert search(client, "AL") == ["alice", "malik"]
    assert api.get("/api/v1/users", {"search": "bob"}).json()["results"][0].keys() == {"id", "username",
                                                                                       "display_name"}


def test_search_leaves_out_inactive_users_and_me(api, make_user):
    me = make_user("sam")
    make_user("samantha", is_active=False)
    assert search(api.as_user(me), "sam") == []


def test_an_empty_search_finds_no_one(api, make_user):
    me = make_user()
    make_user()
    client = api.as_user(me)
    assert search(client, "") == []
    assert search(client, "   ") == []
    assert client.get("/api/v1/users").json() == {"results": []}


@override_settings(PARLEY_USER_SEARCH_LIMIT=2)
def test_search_results_are_bounded(api, make_user):
    me = make_user()
    for n in range(4):
        make_user(f"twin{n}")
    assert search(api.as_user(me), "twin") == ["twin0", "twin1"]


def test_an_oversized_search_is_400(api, make_user):
    response = api.as_user(make_user()).get("/api/v1/users", {"search": "x" * 151})
    assert response.status_code == 400 and "search" in response.json()["fields"]


def test_a_search_with_a_nul_character_is_400(api, make_user):
    assert api.as_user(make_user()).get("/api/v1/users?search=a%00b").status_code == 400


def test_search_needs_authentication(api):
    assert api.get("/api/v1/users", {"search": "a"}).status_code == 401
